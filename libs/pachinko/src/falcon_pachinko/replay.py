"""Connections catching up on durable rooms: history on join, resume from a cursor.

A connection that joins a durable room asks for the room's recent history
(``history=n``) or for everything after its cursor (``since=seq``). The manager
subscribes first, then the connection's :class:`~falcon_pachinko.catchup.CatchUp`
holds the room's live durable messages for it while :func:`read` fetches the
stored ones; the connection receives the history in :class:`HistoryBatch` frames,
then what was held, then live traffic: every message after its cursor exactly
once, in room order.

The reading rule for a resume: retention drops a room's oldest messages first,
so if the message at the cursor is still stored *after* the messages following
it were read, every one of them was stored when it was read, and the resume is
complete (``resumed=True``); if it is gone (or never was a message of the room),
some messages after it may have expired, and the connection gets the recent
history instead with ``resumed=False``, so its client knows to reload.

Failure rules:

* the history cannot be read (the store is away): the connection is closed with
  :attr:`CloseCode.RESYNC` (4003), so its client reconnects and resumes; it is
  never left believing it saw everything;
* more live messages arrive while reading than the connection's outbound queue
  holds: the catch-up overflows and the connection is closed with ``RESYNC`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from .backends.base import History
from .catchup import CatchUp, Phase
from .history import HistoryBatch, Page, Stamp, Stored

__all__ = [
    "PAGE_SIZE",
    "Pending",
    "Render",
    "Replay",
    "Replays",
    "coverage",
    "hold",
    "read",
    "render_default",
    "stamp_batch",
]

#: Messages per history frame: big enough that a long resume takes few frames,
#: small enough that a frame of maximal chat messages stays well under 1 MiB.
PAGE_SIZE: Final = 100

#: Turns one batch into the message a connection is sent.
Render = Callable[[HistoryBatch], object]


class Replay(msgspec.Struct, frozen=True, kw_only=True):
    """What a connection asked for when it joined a durable room.

    Attributes:
        limit: Recent messages to send on a fresh join (or a resume that cannot
            be completed).
        since: The client's cursor (the last ``seq`` it saw), for a resume.
    """

    limit: int = 0
    since: int | None = None


class Pending:
    """One connection's catch-up in one room."""

    __slots__ = ("catchup", "render", "replay", "taken")

    def __init__(self, replay: Replay, render: Render, max_held: int) -> None:
        self.replay = replay
        self.render = render
        self.catchup: CatchUp[Stored] = CatchUp(None, max_held=max_held)
        #: A catch-up is reading its history (two concurrent joins must not both).
        self.taken = False

    def caught_up(self, seq: int) -> bool:
        """Whether a live message at ``seq`` ends the catch-up's filtering.

        True once the history was sent and a live message arrived past what it
        sent: later live copies cannot be of a message the history held.
        """
        last = self.catchup.last
        return self.catchup.phase is Phase.LIVE and (last is None or seq >= last)


class Replays:
    """Every catch-up in progress in one process, by room and connection."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, Pending]] = {}
        # (room, connection) -> from which seq on it has every message of the room.
        self._covered: dict[tuple[str, str], int] = {}

    def begin(
        self, room: str, connection_id: str, replay: Replay, render: Render, max_held: int
    ) -> None:
        """Hold ``room``'s live durable messages for the connection from now on.

        ``max_held`` bounds what may be held: the connection's outbound queue bound.
        The catch-up goes on filtering live messages after its history was sent
        (:attr:`Phase.LIVE`) until :meth:`end`: the manager ends it once a live
        message arrives past what the history sent.
        """
        pending = Pending(replay, render, max_held)
        self._rooms.setdefault(room, {})[connection_id] = pending

    def holding(self, room: str) -> dict[str, Pending] | None:
        """The connections whose live messages in ``room`` go through their catch-up.

        ``None`` if none: the fast path.
        """
        return self._rooms.get(room)

    def rooms_of(self, connection_id: str) -> list[str]:
        """The rooms whose history ``connection_id`` is waiting for."""
        return [
            room
            for room, pending in self._rooms.items()
            if (mine := pending.get(connection_id)) is not None
            and mine.catchup.phase is Phase.READING
        ]

    def take(self, room: str, connection_id: str) -> Pending | None:
        """The connection's catch-up in ``room``, still holding (``None`` if none)."""
        pending = self._rooms.get(room)
        return None if pending is None else pending.get(connection_id)

    def cover(self, room: str, connection_id: str, seq: int | None) -> None:
        """Remember from which ``seq`` on the connection has every message of ``room``.

        ``None`` (unknown) forgets it: a duplicate send is then always answered.
        """
        if seq is None:
            self._covered.pop((room, connection_id), None)
        else:
            self._covered[(room, connection_id)] = seq

    def covered(self, room: str, connection_id: str) -> int | None:
        """From which ``seq`` on the connection has every message (``None``: unknown)."""
        return self._covered.get((room, connection_id))

    def forget(self, room: str, connection_id: str) -> None:
        """The connection left ``room``: forget its catch-up and what it covered."""
        self.end(room, connection_id)
        self._covered.pop((room, connection_id), None)

    def end(self, room: str, connection_id: str) -> None:
        """Forget the connection's catch-up in ``room``."""
        pending = self._rooms.get(room)
        if pending is not None:
            pending.pop(connection_id, None)
            if not pending:
                del self._rooms[room]


def coverage(replay: Replay, batches: list[HistoryBatch]) -> int | None:
    """The lowest ``seq`` from which a connection sent ``batches`` has every message.

    A completed resume covers what follows the cursor (what came before it the
    client may or may not have seen on its earlier connection); a join covers
    what its history began with (everything, ``0``, when the history was
    complete). ``None`` when the batches do not tell.
    """
    if replay.since is not None and any(batch.resumed for batch in batches):
        return replay.since + 1
    if not batches:
        return None
    if batches[0].complete:
        return 0
    first = next((b.messages[0] for b in batches if b.messages), None)
    return None if first is None else first.position.seq


def hold(pending: Pending, stored: Stored, prev: int | None = None) -> list[Stored] | None:
    """Offer a live durable message to a catch-up: what to send now, ``None`` on overflow.

    ``prev`` is the room's position before it, when the backend tells.
    """
    out = pending.catchup.live(stored.position.seq, stored, prev)
    if pending.catchup.phase is Phase.OVERFLOWED:
        return None
    return out


async def read(history: History, room: str, replay: Replay) -> list[HistoryBatch]:
    """Read what a joining connection must be sent, as batches (unstamped).

    Raises:
        BackendError: The store could not be read.
    """
    since = replay.since
    if since is not None and since > 0 and await history.has(room, since):
        pages: list[Page] = []
        cursor = since
        while True:
            page = await history.after(room, cursor, limit=PAGE_SIZE)
            pages.append(page)
            if not page.more or not page.messages:
                break
            cursor = page.messages[-1].position.seq
        # Asked again after the read: still stored now means it was throughout,
        # so (oldest first) nothing after it expired before its page was read.
        if await history.has(room, since):
            return _batches(room, pages, complete=False, resumed=True)
    if replay.limit <= 0:
        # No recent history asked for: a fresh join gets none, a resume that
        # cannot be completed is told so, with nothing else.
        return [] if since is None else _batches(room, [], complete=False, resumed=False)
    page = await history.latest(room, limit=replay.limit)
    resumed = None if since is None else False
    return _batches(room, [page], complete=not page.more, resumed=resumed)


def _batches(
    room: str, pages: list[Page], *, complete: bool, resumed: bool | None
) -> list[HistoryBatch]:
    messages = [m for page in pages for m in page.messages]
    chunks = [messages[i : i + PAGE_SIZE] for i in range(0, len(messages), PAGE_SIZE)] or [[]]
    last = len(chunks) - 1
    return [
        HistoryBatch(
            room=room,
            messages=chunk,
            complete=complete,
            resumed=resumed if i == last else None,
            last=i == last,
        )
        for i, chunk in enumerate(chunks)
    ]


def stamp_batch(batch: HistoryBatch, stamp: Stamp, connection_id: str) -> HistoryBatch:
    """The batch with every message stamped, without those excluded for the connection."""
    messages = [
        Stored(m.position, stamp(m.data, m.position), m.exclude)
        for m in batch.messages
        if m.exclude != connection_id
    ]
    return msgspec.structs.replace(batch, messages=messages)


def render_default(batch: HistoryBatch) -> object:
    """The library's history frame: ``{"type": "history", "room", "messages", ...}``.

    ``messages`` holds the stamped messages as the client receives them live.
    """
    return _DefaultHistory(
        room=batch.room,
        messages=[msgspec.Raw(m.data) for m in batch.messages],
        complete=batch.complete,
        resumed=batch.resumed,
    )


class _DefaultHistory(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="history", tag_field="type"
):
    room: str
    messages: list[msgspec.Raw]
    complete: bool
    resumed: bool | None = None
