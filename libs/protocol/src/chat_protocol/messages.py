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
    "MAX_TEXT_CHARS",
    "ClientMessage",
    "ClientSendMessage",
    "ClientStartTyping",
    "ClientStopTyping",
    "ErrorCode",
    "EmptyPayload",
    "ErrorPayload",
    "NewMessagePayload",
    "PresencePayload",
    "SendMessagePayload",
    "ServerError",
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


class _Inbound(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _Outbound(msgspec.Struct, frozen=True, kw_only=True):
    pass


# -- client to server ---------------------------------------------------------


class SendMessagePayload(_Inbound, frozen=True):
    text: MessageText


class EmptyPayload(_Inbound, frozen=True):
    pass


class ClientSendMessage(_Inbound, frozen=True, tag="clientSendMessage", tag_field="type"):
    payload: SendMessagePayload


class ClientStartTyping(_Inbound, frozen=True, tag="clientStartTyping", tag_field="type"):
    payload: EmptyPayload = EmptyPayload()


class ClientStopTyping(_Inbound, frozen=True, tag="clientStopTyping", tag_field="type"):
    payload: EmptyPayload = EmptyPayload()


#: Every message a client may send: the gateway resource's ``schema``.
ClientMessage = ClientSendMessage | ClientStartTyping | ClientStopTyping


# -- server to client ---------------------------------------------------------


class TextPayload(_Outbound, frozen=True):
    text: str


class UserPayload(_Outbound, frozen=True):
    user: UserName


class NewMessagePayload(_Outbound, frozen=True):
    user: UserName
    text: str


class TypingPayload(_Outbound, frozen=True):
    user: UserName
    is_typing: bool = msgspec.field(name="isTyping")


class PresencePayload(_Outbound, frozen=True):
    #: Everyone present in the room, each once, sorted (the joiner included).
    users: list[UserName]


class ErrorCode:
    """Machine-readable ``serverError`` codes (the ``code`` field)."""

    UNRECOGNIZED = "unrecognized"
    INVALID_PAYLOAD = "invalid_payload"
    INTERNAL = "internal"
    #: NATS could not take the message (an outage longer than the buffer covers).
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
