"""Client-to-server and server-to-client messages, as msgspec structs.

Every message is a JSON object ``{"type": ..., "payload": {...}}``. Inbound
messages are strict (unknown fields and wrong types are rejected). This module
holds types only; the codecs are falcon_pachinko's. The gateway's resource declares
:data:`ClientMessage` as its ``schema``, and the library decodes untrusted frames
with typed decoders it builds from that union once, per resource class. Outbound
messages are encoded once, where they are produced, by the library's msgspec JSON
encoder (``send_media``, ``broadcast_to_room``).

Schema evolution: new fields get defaults; a field's type never changes.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from .names import UserName

__all__ = [
    "MAX_CLIENT_MSG_ID_CHARS",
    "MAX_TEXT_CHARS",
    "ClientFetchHistory",
    "ClientMessage",
    "ClientSendMessage",
    "ClientStartTyping",
    "ClientStopTyping",
    "ErrorCode",
    "EmptyPayload",
    "ErrorPayload",
    "FetchHistoryPayload",
    "HistoryPayload",
    "NewMessagePayload",
    "PresencePayload",
    "SendMessagePayload",
    "ServerError",
    "ServerHistory",
    "ServerMessage",
    "ServerNewMessage",
    "ServerPresence",
    "ServerSystemAnnouncement",
    "ServerSystemMessage",
    "ServerUserJoined",
    "ServerUserLeft",
    "ServerUserTyping",
    "TextPayload",
    "TypingPayload",
    "UserPayload",
    "encode",
    "presence_announcement",
    "typing_stopped",
]

#: Longest chat message, in characters. Well under the frame limit, so that a
#: maximal message always fits a frame once wrapped in its envelope.
MAX_TEXT_CHARS: Final = 2000

MessageText = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS)]

#: Longest ``clientMsgId``, in characters: a UUID (36) fits with room to spare.
MAX_CLIENT_MSG_ID_CHARS: Final = 64

ClientMsgId = Annotated[str, Meta(min_length=1, max_length=MAX_CLIENT_MSG_ID_CHARS)]
#: A room position (``seq``): positive.
Seq = Annotated[int, Meta(ge=1)]


class _Inbound(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _Outbound(msgspec.Struct, frozen=True, kw_only=True):
    pass


# -- client to server ---------------------------------------------------------


class SendMessagePayload(_Inbound, frozen=True):
    text: MessageText
    #: The client's id for this message: a resend with the same id (after a
    #: reconnect) within the dedup window is not a second message. Echoed in the
    #: sender's own ``serverNewMessage``.
    client_msg_id: ClientMsgId | None = msgspec.field(name="clientMsgId", default=None)


class FetchHistoryPayload(_Inbound, frozen=True):
    #: Older than this ``seq`` (the oldest one the client has); none: the newest.
    before: Seq | None = None
    #: How many, at most; the gateway caps it (``CHAT_HISTORY_PAGE_MAX``).
    limit: Annotated[int, Meta(ge=1)] = 50


class EmptyPayload(_Inbound, frozen=True):
    pass


class ClientSendMessage(_Inbound, frozen=True, tag="clientSendMessage", tag_field="type"):
    payload: SendMessagePayload


class ClientStartTyping(_Inbound, frozen=True, tag="clientStartTyping", tag_field="type"):
    payload: EmptyPayload = EmptyPayload()


class ClientStopTyping(_Inbound, frozen=True, tag="clientStopTyping", tag_field="type"):
    payload: EmptyPayload = EmptyPayload()


class ClientFetchHistory(_Inbound, frozen=True, tag="clientFetchHistory", tag_field="type"):
    """Scroll-back: answered with one ``serverHistory`` page."""

    payload: FetchHistoryPayload = FetchHistoryPayload()


#: Every message a client may send: the gateway resource's ``schema``.
ClientMessage = ClientSendMessage | ClientStartTyping | ClientStopTyping | ClientFetchHistory


# -- server to client ---------------------------------------------------------


class TextPayload(_Outbound, frozen=True):
    text: str


class UserPayload(_Outbound, frozen=True):
    user: UserName


class NewMessagePayload(_Outbound, frozen=True, omit_defaults=True):
    user: UserName
    text: str
    #: The sender's ``clientMsgId``, when it gave one.
    client_msg_id: str | None = msgspec.field(name="clientMsgId", default=None)
    #: The message's unique id; a resend with the same ``clientMsgId`` has the same.
    id: str | None = None
    #: Its position in the room: strictly increasing within a room, gaps allowed.
    #: A reconnecting client passes the last one it saw as ``?since=``.
    seq: int | None = None
    #: When it was stored: integer milliseconds since the Unix epoch.
    ts: int | None = None


class TypingPayload(_Outbound, frozen=True):
    user: UserName
    is_typing: bool = msgspec.field(name="isTyping")


class PresencePayload(_Outbound, frozen=True):
    #: Everyone present in the room, each once, sorted (the joiner included).
    users: list[UserName]


class HistoryPayload(_Outbound, frozen=True, omit_defaults=True):
    #: ``serverNewMessage`` payloads, oldest first.
    messages: list[NewMessagePayload]
    #: ``False`` when older messages than these exist (scroll back with
    #: ``clientFetchHistory``).
    complete: bool
    #: On the last frame of a resume (``?since=``): ``True`` when every message
    #: after the cursor followed; ``False`` when some had expired and the recent
    #: history was sent instead (reload). Absent otherwise.
    resumed: bool | None = None


class ErrorCode:
    """Machine-readable ``serverError`` codes (the ``code`` field)."""

    UNRECOGNIZED = "unrecognized"
    INVALID_PAYLOAD = "invalid_payload"
    INTERNAL = "internal"
    #: The message could not be sent or stored (NATS or JetStream away); try again.
    UNAVAILABLE = "unavailable"
    #: The connection sent faster than its rate limit; the message was dropped.
    RATE_LIMITED = "rate_limited"


class ErrorPayload(_Outbound, frozen=True):
    error: str
    code: str = ErrorCode.UNRECOGNIZED


class ServerSystemMessage(_Outbound, frozen=True, tag="serverSystemMessage", tag_field="type"):
    payload: TextPayload


class ServerSystemAnnouncement(
    _Outbound, frozen=True, tag="serverSystemAnnouncement", tag_field="type"
):
    payload: TextPayload


class ServerNewMessage(_Outbound, frozen=True, tag="serverNewMessage", tag_field="type"):
    payload: NewMessagePayload


class ServerUserJoined(_Outbound, frozen=True, tag="serverUserJoined", tag_field="type"):
    payload: UserPayload


class ServerUserLeft(_Outbound, frozen=True, tag="serverUserLeft", tag_field="type"):
    payload: UserPayload


class ServerUserTyping(_Outbound, frozen=True, tag="serverUserTyping", tag_field="type"):
    payload: TypingPayload


class ServerPresence(_Outbound, frozen=True, tag="serverPresence", tag_field="type"):
    """The room's roster, sent to a joiner right after the welcome."""

    payload: PresencePayload


class ServerHistory(_Outbound, frozen=True, tag="serverHistory", tag_field="type"):
    """Stored messages: after the welcome and roster, on a resume, or on a fetch."""

    payload: HistoryPayload


class ServerError(_Outbound, frozen=True, tag="serverError", tag_field="type"):
    payload: ErrorPayload


ServerMessage = (
    ServerSystemMessage
    | ServerSystemAnnouncement
    | ServerNewMessage
    | ServerUserJoined
    | ServerUserLeft
    | ServerUserTyping
    | ServerPresence
    | ServerHistory
    | ServerError
)

_encoder: Final = msgspec.json.Encoder()


def encode(message: ServerMessage) -> bytes:
    """Encode a server message to JSON, once, where it is produced."""
    return _encoder.encode(message)


def presence_announcement(user: str, present: bool) -> ServerUserJoined | ServerUserLeft:
    """What the room hears when ``user`` arrives (first connection) or goes (last one).

    The chat's one presence rule: whoever decides presence (the rooms service in
    a cluster, the gateway on its own) announces each transition with this.
    """
    payload = UserPayload(user=user)
    return ServerUserJoined(payload=payload) if present else ServerUserLeft(payload=payload)


def typing_stopped(user: str) -> ServerUserTyping:
    """``user`` is no longer typing (said so, went silent, or disconnected)."""
    return ServerUserTyping(payload=TypingPayload(user=user, is_typing=False))
