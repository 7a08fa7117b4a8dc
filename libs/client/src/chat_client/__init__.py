"""A client for the chat: one room of a gateway, across reconnects.

:class:`ChatClient` connects with a dev user name or a token, reconnects by the
close-code table (back-off with jitter), resumes with ``?since=`` the last ``seq``
it saw, drops repeats by ``id``, and sends every message with a ``clientMsgId``
so a resend after a reconnect is never a second message. Events are typed
(:mod:`chat_client.state`); the rules live in sans-I/O code
(:class:`RoomState`, :mod:`chat_client.reconnect`), the socket in
:mod:`chat_client.client`. ``chat client`` is the terminal client built on it.
"""

from .client import ChatClient, ChatClosed, Status, TokenSource
from .reconnect import Backoff, Verdict, after_close, after_refusal
from .state import (
    Event,
    Failed,
    HistoryDone,
    Joined,
    Left,
    Message,
    Notice,
    RoomState,
    Roster,
    Typing,
    Unrecognized,
)

__all__ = [
    "Backoff",
    "ChatClient",
    "ChatClosed",
    "Event",
    "Failed",
    "HistoryDone",
    "Joined",
    "Left",
    "Message",
    "Notice",
    "Roster",
    "RoomState",
    "Status",
    "TokenSource",
    "Typing",
    "Unrecognized",
    "Verdict",
    "after_close",
    "after_refusal",
]
