"""From a cursor to live traffic without a gap or a duplicate (sans-I/O).

A connection that joins a durable room, or resumes with ``since``, must see every
message of the room after its cursor exactly once, in room order, and then live
traffic — while the room keeps talking. The adapter does two things in a fixed
order:

1. subscribe to the room's live traffic (from then on every new message arrives
   live), and only then
2. read the stored history after the cursor, in one or more pages.

Every message stored before the read is in the history; every message stored
after the subscription arrives live; a message stored in between is both. A
:class:`CatchUp` merges the two streams by room position (``seq``, strictly
increasing within a room, gaps allowed):

* live messages that arrive while history is being read are **held** (bounded by
  ``max_held``), not sent;
* each history page is sent in order, skipping what was already sent, with
  the held messages it overtook merged in (one may have expired from the store
  between its arrival and the read);
* a completed resume (:meth:`CatchUp.skip_through`) drops what was held at or
  before the client's cursor: it saw those on its earlier connection;
* :meth:`CatchUp.finish` releases the held messages that came after the history,
  in order, and from then on live messages pass straight through, except any at
  or before the last position sent (a duplicate: the live copy of a message the
  history sent may arrive after the history, so the adapter keeps offering live
  messages to the catch-up until one arrives past that position).

Failure rule: if more than ``max_held`` live messages arrive before the history
is read, the catch-up has **overflowed**; the held messages are dropped and the
adapter must end the connection with a reconnectable code (the client resumes
from what it saw). Nothing is silently skipped.

Everything here is pure: positions and opaque items in, items out in the order
the client must see them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["CatchUp", "Phase"]

T = TypeVar("T")


class Phase(enum.Enum):
    """Where a catch-up stands."""

    #: Subscribed; the history is being read; live messages are held.
    READING = "reading"
    #: The history is done; live messages pass straight through.
    LIVE = "live"
    #: Too many live messages arrived while reading: the connection must end.
    OVERFLOWED = "overflowed"


class CatchUp(Generic[T]):
    """Merges one connection's history read with the room's live traffic.

    Args:
        after: The last position the client has (its cursor); ``None`` when it
            has none (a first join: the history read decides where it starts).
        max_held: Live messages that may wait while the history is read.
    """

    def __init__(self, after: int | None, *, max_held: int = 1024) -> None:
        if max_held < 0:
            raise ValueError("max_held must not be negative")
        self.phase = Phase.READING
        self._last = after
        self._max_held = max_held
        self._held: list[tuple[int, T]] = []
        #: The room's previous position of each held message, where known.
        self._prev: dict[int, int] = {}
        #: Set by :meth:`finish`: the first live message after the history does
        #: not follow it (one in between never arrived); the adapter must end
        #: the connection with a reconnectable code, as on overflow.
        self.gap = False

    @property
    def last(self) -> int | None:
        """The last position passed on to the client (its cursor from now on)."""
        return self._last

    def live(self, seq: int, item: T, prev: int | None = None) -> list[T]:
        """A live message at position ``seq``: what to send now (possibly nothing).

        ``prev`` is the room's previous position before it, when the backend
        tells: the first one held after the history must follow the history.
        """
        if self.phase is Phase.LIVE:
            return self._pass([(seq, item)])
        if self.phase is Phase.READING:
            if len(self._held) >= self._max_held:
                self.phase = Phase.OVERFLOWED
                self._held.clear()
                self._prev.clear()
            else:
                self._held.append((seq, item))
                if prev is not None:
                    self._prev[seq] = prev
        return []

    def skip_through(self, seq: int) -> None:
        """The client has everything up to ``seq`` (its cursor, when a resume completes).

        What was held at or before it is dropped, and nothing at or before it is
        sent from now on: a late copy of a message it saw is a duplicate.
        """
        self._held = [entry for entry in self._held if entry[0] > seq]
        if self._last is None or self._last < seq:
            self._last = seq

    def history(self, page: Iterable[tuple[int, T]]) -> list[T]:
        """A page of stored messages, oldest first: what to send now.

        Held live messages up to the page's last position are merged into it: a
        message that arrived live and then left the store before the page was
        read (retention racing the read) is still sent, in its place. Before the
        first page, those older than the page's first message are dropped: the
        client's view of the room begins there (a page of the newest messages
        may have overtaken a live copy still on its way, and sending what was
        held below it would leave that one out).
        """
        if self.phase is not Phase.READING:
            return []
        entries = sorted(page, key=_position)
        if entries and self._held:
            first, top = entries[0][0], entries[-1][0]
            if self._last is None:
                self._held = [entry for entry in self._held if entry[0] >= first]
            early = [entry for entry in self._held if entry[0] <= top]
            if early:
                self._held = [entry for entry in self._held if entry[0] > top]
                entries = sorted(entries + early, key=_position)
        return self._pass(entries)

    def finish(self) -> list[T]:
        """The history is read: release what was held after it, and go live.

        The first held message after the last position sent must follow it
        (its ``prev`` at or before it): the live feed checks each message
        against the one before, but nothing else checks this first link.
        Otherwise :attr:`gap` is set and nothing is released.
        """
        if self.phase is not Phase.READING:
            return []
        held, self._held = sorted(self._held, key=_position), []
        prevs, self._prev = self._prev, {}
        self.phase = Phase.LIVE
        last = self._last
        if last is not None:
            first = next((seq for seq, _ in held if seq > last), None)
            if first is not None and prevs.get(first, last) > last:
                self.gap = True
                return []
        return self._pass(held)

    def _pass(self, entries: Iterable[tuple[int, T]]) -> list[T]:
        out: list[T] = []
        for seq, item in entries:
            if self._last is not None and seq <= self._last:
                continue  # already sent (history and live overlap) or a redelivery
            self._last = seq
            out.append(item)
        return out


def _position(entry: tuple[int, object]) -> int:
    return entry[0]
