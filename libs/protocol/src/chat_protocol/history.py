"""Where a chat message's position goes, and how history reaches a client.

Chat messages are durable: the gateway stores each ``serverNewMessage`` (through
falcon_pachinko's durable rooms) before anyone receives it. Its position (``id``,
``seq``, ``ts``) is put into its ``payload``, once per message per gateway, by
:func:`stamp`; history is sent as ``serverHistory`` frames made by
:func:`history_frame`, each element a ``serverNewMessage`` payload exactly as it
was received live.
"""

from __future__ import annotations

from typing import Final

import msgspec

from falcon_pachinko.history import HistoryBatch, Position, stamp_top_level

from .messages import HistoryPayload, NewMessagePayload, ServerHistory, ServerNewMessage, encode

__all__ = ["history_frame", "idempotency_key", "stamp"]

_NEW_MESSAGE: Final = msgspec.json.Decoder(ServerNewMessage)


def stamp(data: bytes, position: Position) -> bytes:
    """Put a stored message's position into its payload (the gateway's stamp).

    A stored message that is not a ``serverNewMessage`` gets the library's
    top-level stamp instead.
    """
    try:
        message = _NEW_MESSAGE.decode(data)
    except msgspec.DecodeError:
        return stamp_top_level(data, position)
    payload = msgspec.structs.replace(
        message.payload, id=position.id, seq=position.seq, ts=position.ts
    )
    return encode(ServerNewMessage(payload=payload))


def history_frame(batch: HistoryBatch) -> ServerHistory:
    """The ``serverHistory`` frame of one batch of stamped messages."""
    messages: list[NewMessagePayload] = []
    for stored in batch.messages:
        try:
            messages.append(_NEW_MESSAGE.decode(stored.data).payload)
        except msgspec.DecodeError:
            continue  # not a chat message: nothing a chat client could show
    payload = HistoryPayload(messages=messages, complete=batch.complete, resumed=batch.resumed)
    return ServerHistory(payload=payload)


def idempotency_key(user: str, client_msg_id: str) -> str:
    """The dedup key of a client's message: its ``clientMsgId`` is the sender's own.

    Two users who pick the same ``clientMsgId`` never dedupe each other's messages.
    """
    return f"{user}\x00{client_msg_id}"
