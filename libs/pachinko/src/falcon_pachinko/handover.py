"""What a standby owes when it takes over: presence changes decided, not yet announced (pure).

Every replica of the directory applies the same membership events and so decides
the same presence changes; only the active one announces them, and says so on
a control subject (:class:`Announced`, one message per batch). A standby keeps
the changes it decided that no announcement has covered yet. When it takes over,
those are what the old holder did not get to announce: it announces them, and
nothing the old holder announced is announced twice.

Rules:

* a change is matched by ``(room, identity, present)``: the same transition,
  whichever connection caused it. A decision and an announcement cancel each
  other in either order (the active may decide first, or the standby);
* a decision the holder did not announce although it was seen alive
  ``horizon_s`` later is dropped: the holder saw it otherwise, and it was the
  holder's to decide. An announcement nothing matched within ``horizon_s`` is
  dropped likewise. While the holder is not seen alive, decisions are kept: it
  may be dead;
* at takeover (:meth:`Handover.take`) the changes owed for one ``(room,
  identity)`` are netted: the room heard the opposite of the first of them, so
  it hears the last only if that differs (a departure and a return nobody
  heard cancel out);
* at most ``limit`` decisions are kept (the oldest go first, counted in
  :attr:`Handover.dropped`), so a long outage of the store cannot grow memory
  without bound.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

import msgspec

from .presence import PresenceChange

__all__ = ["Announced", "Handover"]

_Key = tuple[str, str, bool]


class Announced(msgspec.Struct, frozen=True, kw_only=True):
    """The active directory announced these changes (published after announcing).

    Attributes:
        by: The announcing replica's name (a replica ignores its own).
        changes: The batch, in the order announced.
    """

    by: str
    changes: list[PresenceChange]


@dataclass(slots=True)
class _Entry:
    change: PresenceChange
    at: float


def _key(change: PresenceChange) -> _Key:
    return (change.room, change.identity, change.present)


class Handover:
    """A standby's ledger of presence changes owed (see the module's rules).

    Args:
        horizon_s: How long an unmatched decision or announcement is kept once the
            holder is known to have lived past it (the replicas' decisions about
            one event differ in time by at most the expiry interval plus a batch
            window; this must exceed that).
        limit: Most decisions kept.

    Raises:
        ValueError: ``horizon_s`` or ``limit`` is not positive.
    """

    def __init__(self, *, horizon_s: float, limit: int = 100_000) -> None:
        if horizon_s <= 0 or limit <= 0:
            raise ValueError("horizon_s and limit must be positive")
        self.horizon_s: Final = horizon_s
        self.limit: Final = limit
        self._decided: deque[_Entry] = deque()
        self._announced: deque[_Entry] = deque()
        #: Decisions dropped because more than ``limit`` were owed.
        self.dropped = 0

    @property
    def owed(self) -> int:
        """Decisions no announcement has covered yet."""
        return len(self._decided)

    def decided(self, change: PresenceChange, now: float) -> None:
        """This replica (standing by) decided ``change``."""
        self._prune_announced(now)
        if self._cancel(self._announced, _key(change)):
            return
        self._decided.append(_Entry(change, now))
        while len(self._decided) > self.limit:
            self._decided.popleft()
            self.dropped += 1

    def announced(self, changes: list[PresenceChange], now: float) -> None:
        """The holder announced ``changes``."""
        self._prune_announced(now)
        for change in changes:
            if not self._cancel(self._decided, _key(change)):
                self._announced.append(_Entry(change, now))

    def holder_alive(self, now: float) -> None:
        """The holder was seen writing its lease at ``now``: it lived past older decisions."""
        cutoff = now - self.horizon_s
        while self._decided and self._decided[0].at <= cutoff:
            self._decided.popleft()

    def take(self) -> list[PresenceChange]:
        """The changes owed, netted per ``(room, identity)``, in the order decided; clears."""
        first: dict[tuple[str, str], PresenceChange] = {}
        last: dict[tuple[str, str], PresenceChange] = {}
        for entry in self._decided:
            who = (entry.change.room, entry.change.identity)
            first.setdefault(who, entry.change)
            last.pop(who, None)  # re-inserted: the order is that of the last decision
            last[who] = entry.change
        self._decided.clear()
        self._announced.clear()
        # Before the first change owed, the room heard the opposite of it; after
        # the last, the truth is the last. A departure and a return nobody heard
        # leave the room where it was.
        return [change for who, change in last.items() if change.present == first[who].present]

    def _prune_announced(self, now: float) -> None:
        cutoff = now - self.horizon_s
        while self._announced and self._announced[0].at <= cutoff:
            self._announced.popleft()

    @staticmethod
    def _cancel(entries: deque[_Entry], key: _Key) -> bool:
        for i, entry in enumerate(entries):
            if _key(entry.change) == key:
                del entries[i]
                return True
        return False
