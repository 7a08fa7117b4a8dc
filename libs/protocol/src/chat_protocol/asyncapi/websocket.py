"""The client protocol in the document: the WebSocket channel, its messages and close codes.

One channel, ``/ws/chat/{room}`` on a gateway. What a client sends is a
``receive`` operation of the chat, what it is sent a ``send`` operation. Which
messages there are is read from the protocol's unions
(:data:`~chat_protocol.messages.ClientMessage`,
:data:`~chat_protocol.messages.ServerMessage`); what each is for, from
:data:`SUMMARIES`; the close codes from the one table
(:class:`~chat_protocol.close_codes.CloseCode` and
:class:`~chat_protocol.close_codes.ChatCloseCode`) with :data:`CLOSE_CODES`
saying what each means. A message or a code without a line here stops the
generation with an error naming it, so none can be left out of the document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, get_args

from ..close_codes import ChatCloseCode, CloseCode, is_reconnectable
from ..messages import MAX_TEXT_CHARS, ClientMessage, ServerMessage
from ..names import ROOM_NAME_PATTERN
from .schemas import ecma_pattern, error_codes, ref

__all__ = [
    "CHANNEL",
    "CLOSE_CODES",
    "HANDSHAKE_REFUSALS",
    "SUMMARIES",
    "channels",
    "close_codes",
    "message_types",
    "messages",
    "operations",
]

#: The WebSocket channel's id in the document.
CHANNEL: Final = "chatRoom"

#: What each message is for, by its ``type``.
SUMMARIES: Final[Mapping[str, str]] = {
    "clientSendMessage": (
        f"Say something in the room (1-{MAX_TEXT_CHARS} characters). Once it is stored the "
        "sender gets its echo, its own `serverNewMessage`; a resend with the same "
        "`clientMsgId` within `CHAT_HISTORY_DEDUP_WINDOW_S` is not a second message."
    ),
    "clientStartTyping": (
        "The user is typing: the others get `serverUserTyping` with `isTyping: true`, "
        "until `clientStopTyping`, a sent message, `CHAT_TYPING_TTL_S` of silence or a "
        "disconnect."
    ),
    "clientStopTyping": "The user stopped typing: the others get `serverUserTyping` `false`.",
    "clientFetchHistory": (
        "Scroll back: stored messages older than `before` (the oldest `seq` the client "
        "has; none for the newest), at most `limit` (capped at `CHAT_HISTORY_PAGE_MAX`). "
        "Answered with one `serverHistory`, or `serverError` `unavailable`."
    ),
    "serverSystemMessage": "The welcome: the first message, right after connecting.",
    "serverSystemAnnouncement": "The periodic announcement, once per period in every room.",
    "serverNewMessage": (
        "A chat message, to everyone in the room, its sender included (the echo: it was "
        "stored). `id` is unique, `seq` its position in the room (strictly increasing, "
        "gaps allowed), `ts` when it was stored (ms since the Unix epoch), `clientMsgId` "
        "as the sender gave it. With `CHAT_HISTORY=false` there is no `id`, `seq` or `ts`."
    ),
    "serverUserJoined": "A user's first connection in the room arrived (sent to the others).",
    "serverUserLeft": "A user's last connection in the room is gone.",
    "serverUserTyping": "A user started (`isTyping: true`) or stopped typing.",
    "serverPresence": (
        "The roster, second, right after the welcome: everyone in the room, cluster-wide, "
        "each once, sorted, the joiner included. Not sent while the rooms service is down."
    ),
    "serverHistory": (
        "Stored messages, oldest first: third on a join (the last `CHAT_HISTORY_ON_JOIN`), "
        "every message after `since` on a resume (frames of 100; the last says `resumed`), "
        "or the answer to `clientFetchHistory`. `complete` is false while older ones exist."
    ),
    "serverError": (
        "A message of the client's was refused; the connection stays open. `code` says why."
    ),
}

#: What each close code means to a client, by its name in the table.
CLOSE_CODES: Final[Mapping[str, str]] = {
    "NORMAL": "normal closure",
    "GOING_AWAY": "the server is going away",
    "PROTOCOL_ERROR": (
        "the client broke RFC 6455 (an unmasked frame, reserved bits, a control frame over "
        "125 bytes, an invalid close code); not to be retried as is"
    ),
    "INVALID_FRAME_PAYLOAD": "a text frame was not valid UTF-8; not to be retried as is",
    "POLICY_VIOLATION": (
        "the client kept sending far past its message budget (`CHAT_RATE_*`); reconnect only "
        "after slowing down. A refusal at the handshake is HTTP 403 instead"
    ),
    "MESSAGE_TOO_BIG": "a frame exceeded `CHAT_WS_MAX_BYTES`; do not resend that message",
    "INTERNAL_ERROR": "an unexpected server fault (no details are sent); reconnect",
    "SERVICE_RESTART": "the gateway is restarting or shutting down; reconnect, to any gateway",
    "SLOW_CONSUMER": (
        "the client did not read fast enough: its bounded outbound queue "
        "(`CHAT_OUTBOUND_QUEUE_*`) overflowed; reconnect"
    ),
    "CREDENTIALS_EXPIRED": (
        "the token's `exp` passed while connected; reconnect with a fresh token"
    ),
    "RESYNC": (
        "the gateway could not give this client every message exactly once (its NATS link "
        "lost some of the room's messages, the room sent more than the outbound queue holds "
        "while the history was read, or the history could not be read); reconnect after "
        "the usual back-off with `?since=` the last `seq` seen"
    ),
    "KICKED": (
        "an operator removed the user (`chat kick USER [--room ROOM]`), on every gateway; "
        "do not reconnect with the same token"
    ),
}

#: HTTP answers to a handshake that is refused: no WebSocket is opened.
HANDSHAKE_REFUSALS: Final[Mapping[str, str]] = {
    "400": "`since` is not an integer >= 0",
    "403": (
        "the page's `Origin` is not allowed (`CHAT_ALLOWED_ORIGINS`), there is no valid "
        "identity (`token`, or `user` in dev mode), the room name is invalid, or the "
        "token's `rooms` claim does not permit the room"
    ),
    "429": "the user holds `CHAT_MAX_CONNECTIONS_PER_USER` connections already",
    "503": (
        "try again, perhaps elsewhere (`Retry-After`): the gateway is full "
        "(`CHAT_MAX_CONNECTIONS`), joining took longer than `CHAT_CONNECT_TIMEOUT_S`, NATS "
        "is away, or the token's signing keys cannot be fetched"
    ),
}

_CHANNEL_DESCRIPTION: Final = (
    "One participant in one room. Every frame is a JSON text frame "
    '`{"type": ..., "payload": {...}}`. After the handshake the client gets '
    "`serverSystemMessage` (the welcome), `serverPresence` (the roster), then "
    "`serverHistory` (with history on), then live traffic with no gap and no duplicate. "
    "Messages from one connection reach every member in the order they were sent. A bad "
    "message gets `serverError` and never closes the connection.\n\n"
    "Refused handshakes (HTTP, no WebSocket; `x-handshake-refusals`):\n\n"
    "{refusals}\n\n"
    "Close codes (`x-close-codes`): `4000-4499` means reconnect after a back-off, "
    "`4500-4999` is terminal, RFC 6455 codes keep their meaning. A connection that drops "
    "without a close frame (1006: its gateway was killed) reconnects with `?since=`.\n\n"
    "| code | name | reconnect | meaning |\n|---|---|---|---|\n{table}"
)


def message_types() -> tuple[list[Any], list[Any]]:
    """The client's and the server's message structs, in the unions' order."""
    return list(get_args(ClientMessage)), list(get_args(ServerMessage))


def _tag(struct: Any) -> str:
    return str(struct.__struct_config__.tag)


def _summary(tag: str) -> str:
    if tag not in SUMMARIES:
        raise ValueError(f"message {tag!r} has no summary in SUMMARIES")
    return SUMMARIES[tag]


def messages() -> dict[str, Any]:
    """``components.messages``: every client and server message, by its ``type``.

    Raises:
        ValueError: A message has no line in :data:`SUMMARIES`.
    """
    client, server = message_types()
    out: dict[str, Any] = {}
    for struct in [*client, *server]:
        tag = _tag(struct)
        out[tag] = {
            "name": tag,
            "title": tag,
            "summary": _summary(tag),
            "contentType": "application/json",
            "payload": ref(struct.__name__),
        }
    out["serverError"]["x-error-codes"] = error_codes()
    return out


def close_codes() -> list[dict[str, Any]]:
    """Every close code the chat sends, with what it means and the reconnect rule.

    Raises:
        ValueError: A code has no line in :data:`CLOSE_CODES`.
    """
    rows: list[dict[str, Any]] = []
    for code in sorted([*CloseCode, *ChatCloseCode]):
        if code.name not in CLOSE_CODES:
            raise ValueError(f"close code {int(code)} ({code.name}) has no meaning in CLOSE_CODES")
        rows.append(
            {
                "code": int(code),
                "name": code.name,
                "reconnect": is_reconnectable(code),
                "meaning": CLOSE_CODES[code.name],
            }
        )
    return rows


def _description(rows: list[dict[str, Any]]) -> str:
    refusals = "\n".join(f"- HTTP {status}: {why}" for status, why in HANDSHAKE_REFUSALS.items())
    table = "\n".join(
        f"| {r['code']} | {r['name']} | {'yes' if r['reconnect'] else 'no'} | {r['meaning']} |"
        for r in rows
    )
    return _CHANNEL_DESCRIPTION.replace("{refusals}", refusals).replace("{table}", table)


def _query() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "token": {
                "type": "string",
                "description": "The JWT naming the user (`CHAT_AUTH=jwt`, the default).",
            },
            "user": {
                **ref("UserName"),
                "description": "The user's name, trusted as given (`CHAT_AUTH=dev` only).",
            },
            "since": {
                "type": "string",
                "pattern": "^[0-9]{1,19}$",
                "description": (
                    "Resume: the last `seq` the client saw (0: none yet). Every message of "
                    "the room after it follows in `serverHistory`, the last frame saying "
                    "`resumed`. Ignored with `CHAT_HISTORY=false`."
                ),
            },
        },
    }


def channels() -> dict[str, Any]:
    """``channels``: the one WebSocket channel."""
    client, server = message_types()
    tags = [_tag(struct) for struct in [*client, *server]]
    return {
        CHANNEL: {
            "address": "/ws/chat/{room}",
            "title": "A chat room",
            "description": _description(close_codes()),
            "servers": [{"$ref": "#/servers/gateway"}],
            "parameters": {
                "room": {
                    "description": (
                        "The room's name: 1-64 of `a-z`, `0-9`, `_`, `-`, starting with a "
                        f"letter or digit (`{ecma_pattern(ROOM_NAME_PATTERN)}`, schema `RoomName`)."
                    )
                }
            },
            "messages": {tag: {"$ref": f"#/components/messages/{tag}"} for tag in tags},
            "bindings": {
                "ws": {
                    "method": "GET",
                    "query": _query(),
                    "headers": {
                        "type": "object",
                        "properties": {
                            "Origin": {
                                "type": "string",
                                "description": "Checked against `CHAT_ALLOWED_ORIGINS` "
                                "when present (browsers send it).",
                            }
                        },
                    },
                    "bindingVersion": "0.1.0",
                }
            },
            "x-handshake-refusals": dict(HANDSHAKE_REFUSALS),
            "x-close-codes": close_codes(),
        }
    }


def operations() -> dict[str, Any]:
    """``operations``: one per message, named after it; a client's is a ``receive``.

    Raises:
        ValueError: A message has no line in :data:`SUMMARIES`.
    """
    client, server = message_types()
    out: dict[str, Any] = {}
    channel = {"$ref": f"#/channels/{CHANNEL}"}
    for action, structs in (("receive", client), ("send", server)):
        for struct in structs:
            tag = _tag(struct)
            out[tag] = {
                "action": action,
                "channel": channel,
                "summary": _summary(tag),
                "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/{tag}"}],
            }
    out["clientFetchHistory"]["reply"] = {
        "channel": channel,
        "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/serverHistory"}],
    }
    return out
