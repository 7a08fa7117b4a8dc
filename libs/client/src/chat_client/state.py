"""What a chat client knows between frames: the sans-I/O core of :mod:`chat_client`.

Server frames in, :data:`Event` values out; a send in, the frame to write out; a
reconnect in, the query that resumes and the frames to send again. No sockets, no
clock, no tasks: :class:`chat_client.client.ChatClient` is the thin async adapter
that moves bytes between a WebSocket and a :class:`RoomState`.

Rules, all of them here:

* **Cursor.** The highest ``seq`` seen (live, history or scroll-back) is the
  cursor; a reconnect asks for ``?since=<cursor>`` and the gateway sends exactly
  what came after it (``serverHistory`` frames, the last with ``resumed``).
* **Repeats are dropped by ``id``.** A resume may repeat what a client saw just
  before it lost the connection, and a resent message is answered with its stored
  original: a message whose ``id`` was seen is not an event again. The ids of the
  last :data:`DEFAULT_SEEN_IDS` messages are remembered.
* **Idempotent sends.** Every send gets a ``clientMsgId`` and stays *pending*
  until its echo (a ``serverNewMessage`` carrying that ``clientMsgId``) arrives;
  after a reconnect every pending send goes out again with the same id, which the
  gateway does not store twice.
* **The roster** starts from ``serverPresence`` and follows ``serverUserJoined``
  and ``serverUserLeft``.
* **Never raises on server input**: a frame that does not decode, or of a type
  this client does not know, becomes :class:`Unrecognized`.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

import msgspec

from chat_protocol.messages import (
    ClientFetchHistory,
    ClientSendMessage,
    ClientStartTyping,
    ClientStopTyping,
    FetchHistoryPayload,
    NewMessagePayload,
    SendMessagePayload,
    ServerError,
    ServerHistory,
    ServerMessage,
    ServerNewMessage,
    ServerPresence,
    ServerSystemAnnouncement,
    ServerSystemMessage,
    ServerUserJoined,
    ServerUserLeft,
    ServerUserTyping,
)

__all__ = [
    "DEFAULT_SEEN_IDS",
    "Event",
    "Failed",
    "HistoryDone",
    "Joined",
    "Left",
    "Message",
    "Notice",
    "Roster",
    "RoomState",
    "Typing",
    "Unrecognized",
]

#: How many message ids a client remembers to drop repeats.
DEFAULT_SEEN_IDS: Final = 10_000


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A chat message, live or from the room's history."""

    user: str
    text: str
    #: Unique (``None`` when the chat keeps no history: live-only messages).
    id: str | None = None
    #: The message's place in the room: strictly increasing, with gaps.
    seq: int | None = None
    #: When it was stored, integer milliseconds since the Unix epoch.
    ts: int | None = None
    client_msg_id: str | None = None
    #: The echo of a send of this client's (matched by ``clientMsgId``).
    mine: bool = False
    #: Came in a ``serverHistory`` frame (on join, on a resume, or scrolling back).
    from_history: bool = False


class Roster(msgspec.Struct, frozen=True):
    """Everyone in the room, sorted, when joining."""

    users: tuple[str, ...]


class Joined(msgspec.Struct, frozen=True):
    user: str


class Left(msgspec.Struct, frozen=True):
    user: str


class Typing(msgspec.Struct, frozen=True):
    user: str
    is_typing: bool


class Notice(msgspec.Struct, frozen=True):
    """A system message (the welcome) or an announcement to every room."""

    text: str
    announcement: bool = False


class Failed(msgspec.Struct, frozen=True):
    """A ``serverError``: ``code`` is one of :class:`chat_protocol.messages.ErrorCode`."""

    code: str
    error: str


class HistoryDone(msgspec.Struct, frozen=True):
    """The end of one ``serverHistory`` frame's messages.

    ``complete``: no older messages exist. ``resumed``: on the last frame of a
    resume, ``True`` when everything after the cursor followed, ``False`` when some
    of it had expired (what followed is the recent history instead); ``None``
    when the frame was not the end of a resume.
    """

    complete: bool
    resumed: bool | None = None


class Unrecognized(msgspec.Struct, frozen=True):
    """A frame this client could not read (a newer server, or not the chat)."""

    frame: str | bytes


Event = Message | Roster | Joined | Left | Typing | Notice | Failed | HistoryDone | Unrecognized

_decoder: Final = msgspec.json.Decoder(ServerMessage)
_encoder: Final = msgspec.json.Encoder()


class RoomState:
    """One client's view of one room, across reconnects.

    Args:
        seen_ids: How many message ids to remember for dropping repeats.
        since: A cursor to start from (a ``seq`` seen in an earlier run).
    """

    def __init__(self, *, seen_ids: int = DEFAULT_SEEN_IDS, since: int | None = None) -> None:
        if seen_ids < 1:
            raise ValueError("seen_ids must be positive")
        if since is not None and since < 0:
            raise ValueError("since must not be negative")
        #: The highest ``seq`` seen: where a reconnect resumes from.
        self.cursor: int | None = since
        #: The lowest ``seq`` seen: where scrolling back goes on from.
        self.oldest: int | None = None
        #: Who is in the room now.
        self.users: set[str] = set()
        #: Sends not yet echoed, by ``clientMsgId``, in the order they were made.
        self.pending: OrderedDict[str, bytes] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_max = seen_ids

    # -- out ---------------------------------------------------------------------

    def send(self, text: str, client_msg_id: str | None = None) -> tuple[str, bytes]:
        """Record a send; its ``clientMsgId`` and the frame to write.

        The frame stays pending until echoed (:meth:`resend` gives it again).

        Raises:
            ValueError: ``text`` or ``client_msg_id`` breaks the protocol's limits
                (the gateway would refuse it).
        """
        client_msg_id = client_msg_id if client_msg_id is not None else uuid.uuid4().hex
        try:
            payload = msgspec.convert(
                {"text": text, "clientMsgId": client_msg_id}, SendMessagePayload
            )
        except msgspec.ValidationError as exc:
            raise ValueError(f"not a message the chat accepts: {exc}") from None
        frame = _encoder.encode(ClientSendMessage(payload=payload))
        self.pending[client_msg_id] = frame
        return client_msg_id, frame

    def resend(self) -> list[bytes]:
        """After a reconnect: every pending send's frame, oldest first, same ids."""
        return list(self.pending.values())

    def fetch_older(self, limit: int = 50) -> bytes:
        """The frame asking for ``limit`` messages older than the oldest seen."""
        payload = FetchHistoryPayload(before=self.oldest, limit=limit)
        return _encoder.encode(ClientFetchHistory(payload=payload))

    @staticmethod
    def typing(active: bool) -> bytes:
        """The frame saying this client started or stopped typing."""
        return _encoder.encode(ClientStartTyping() if active else ClientStopTyping())

    def query(self) -> dict[str, str]:
        """Query parameters for the next connection: ``since`` once a ``seq`` was seen."""
        return {} if self.cursor is None else {"since": str(self.cursor)}

    # -- in ----------------------------------------------------------------------

    def receive(self, frame: str | bytes) -> list[Event]:
        """The events one server frame gives (repeats dropped). Never raises."""
        try:
            message = _decoder.decode(frame)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return [Unrecognized(frame)]
        match message:
            case ServerNewMessage(payload=payload):
                return self._messages([payload], from_history=False)
            case ServerHistory(payload=page):
                events = self._messages(page.messages, from_history=True)
                events.append(HistoryDone(page.complete, page.resumed))
                return events
            case ServerPresence() | ServerUserJoined() | ServerUserLeft():
                return [self._roster(message)]
        return [_event_of(message)]

    def _roster(self, message: ServerPresence | ServerUserJoined | ServerUserLeft) -> Event:
        match message:
            case ServerPresence(payload=presence):
                self.users = set(presence.users)
                return Roster(tuple(sorted(self.users)))
            case ServerUserJoined(payload=who):
                self.users.add(who.user)
                return Joined(who.user)
            case ServerUserLeft(payload=who):
                self.users.discard(who.user)
                return Left(who.user)

    def _messages(
        self, payloads: Iterable[NewMessagePayload], *, from_history: bool
    ) -> list[Event]:
        events: list[Event] = []
        for p in payloads:
            echoed = None if p.client_msg_id is None else self.pending.pop(p.client_msg_id, None)
            mine = echoed is not None
            if p.seq is not None:
                self.cursor = p.seq if self.cursor is None else max(self.cursor, p.seq)
                self.oldest = p.seq if self.oldest is None else min(self.oldest, p.seq)
            if p.id is not None:
                if p.id in self._seen:
                    continue
                self._remember(p.id)
            events.append(
                Message(
                    user=p.user,
                    text=p.text,
                    id=p.id,
                    seq=p.seq,
                    ts=p.ts,
                    client_msg_id=p.client_msg_id,
                    mine=mine,
                    from_history=from_history,
                )
            )
        return events

    def _remember(self, message_id: str) -> None:
        self._seen[message_id] = None
        if len(self._seen) > self._seen_max:
            self._seen.popitem(last=False)


def _event_of(message: ServerMessage) -> Event:
    """The event of a message that changes no state."""
    match message:
        case ServerUserTyping(payload=typing):
            return Typing(typing.user, typing.is_typing)
        case ServerSystemMessage(payload=text):
            return Notice(text.text)
        case ServerSystemAnnouncement(payload=text):
            return Notice(text.text, announcement=True)
        case ServerError(payload=error):
            return Failed(error.code, error.error)
    raise AssertionError(f"unhandled server message {message!r}")  # pragma: no cover
