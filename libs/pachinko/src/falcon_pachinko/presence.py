"""User-level presence: who is in a room, and when someone arrives or goes (sans-I/O).

A person (an *identity*: the label a resource gives its connection with
``set_presence``) may hold several connections in one room: tabs, devices,
gateways. Presence counts connections per ``(room, identity)`` and reports only
the transitions that matter to the others in the room:

* **first in**: the identity's first connection arrives -> ``present=True``;
* **last out**: its last connection is gone -> ``present=False``.

A connection can also be *held*: it is gone, but still counts until a deadline.
A gateway that shuts down holds its connections for a grace period, so a user
who reconnects elsewhere within it is neither announced as left nor as joined
again (no flapping during a rolling update). A held connection that is not
replaced in time is released by :meth:`PresenceTracker.expire`.

Rules, whatever the order of events:

* each transition is reported exactly once: never ``present=True`` twice for an
  identity without a ``present=False`` in between, and the reverse;
* a connection without an identity is never reported (there is no one to name);
* adding or removing a connection twice changes nothing.

Everything here is pure: events and a clock reading go in, changes come out. The
in-process backend runs one tracker per process; across processes the
:class:`~falcon_pachinko.registry.Registry` of the membership directory runs
the one tracker of the cluster, so each transition is decided in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

__all__ = ["PresenceChange", "PresenceHandler", "PresenceTracker"]


class PresenceChange(msgspec.Struct, frozen=True, kw_only=True):
    """An identity arrived in a room (first connection) or left it (last connection).

    Attributes:
        room: The room.
        identity: Who (the connection's presence label).
        present: ``True`` on the first connection, ``False`` once the last is gone.
        connection_id: The connection whose arrival or departure caused the change
            (an announcement of an arrival usually excludes it).
    """

    room: str
    identity: str
    present: bool
    connection_id: str


#: Called with each presence change, in the order they happen.
PresenceHandler = Callable[[PresenceChange], Awaitable[None]]


@dataclass
class _Identity:
    # connection id -> deadline (None while the connection is live).
    connections: dict[str, float | None] = field(default_factory=dict)


class PresenceTracker:
    """Connections per ``(room, identity)``, with first-in/last-out changes."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, _Identity]] = {}
        # connection id -> (room, identity) for every held connection, for expiry.
        self._held: dict[tuple[str, str], str] = {}

    # -- input -------------------------------------------------------------------

    def add(self, room: str, identity: str | None, connection_id: str) -> PresenceChange | None:
        """A connection with ``identity`` joined ``room``.

        Returns:
            The change when it is the identity's first connection in the room.
        """
        if identity is None:
            return None
        people = self._rooms.setdefault(room, {})
        person = people.get(identity)
        if person is None:
            person = people[identity] = _Identity()
        first = not person.connections
        self._held.pop((room, connection_id), None)
        person.connections[connection_id] = None
        if not first:
            return None
        return PresenceChange(
            room=room, identity=identity, present=True, connection_id=connection_id
        )

    def remove(self, room: str, identity: str | None, connection_id: str) -> PresenceChange | None:
        """A connection left ``room`` for good (a clean close, a lost gateway).

        Returns:
            The change when it was the identity's last connection in the room.
        """
        if identity is None:
            return None
        self._held.pop((room, connection_id), None)
        person = self._rooms.get(room, {}).get(identity)
        if person is None or connection_id not in person.connections:
            return None
        del person.connections[connection_id]
        if person.connections:
            return None
        self._forget(room, identity)
        return PresenceChange(
            room=room, identity=identity, present=False, connection_id=connection_id
        )

    def hold(self, room: str, identity: str | None, connection_id: str, until: float) -> None:
        """A connection is gone, but keeps its identity present until ``until``."""
        if identity is None:
            return
        person = self._rooms.get(room, {}).get(identity)
        if person is None or connection_id not in person.connections:
            return
        person.connections[connection_id] = until
        self._held[(room, connection_id)] = identity

    def expire(self, now: float) -> list[PresenceChange]:
        """Release every held connection whose deadline has passed."""
        changes: list[PresenceChange] = []
        for (room, connection_id), identity in list(self._held.items()):
            person = self._rooms.get(room, {}).get(identity)
            deadline = person.connections.get(connection_id) if person is not None else None
            if deadline is not None and now >= deadline:
                change = self.remove(room, identity, connection_id)
                if change is not None:
                    changes.append(change)
        return changes

    # -- queries -----------------------------------------------------------------

    def identities(self, room: str) -> list[str]:
        """Who is present in ``room`` (held connections included), sorted, each once."""
        return sorted(self._rooms.get(room, {}))

    def count(self, room: str, identity: str) -> int:
        """How many connections (held ones included) ``identity`` has in ``room``."""
        person = self._rooms.get(room, {}).get(identity)
        return 0 if person is None else len(person.connections)

    @property
    def held_count(self) -> int:
        """Connections currently held (gone, within their grace)."""
        return len(self._held)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a held connection, if any."""
        deadlines = [
            self._rooms[room][identity].connections[conn]
            for (room, conn), identity in self._held.items()
        ]
        return min((d for d in deadlines if d is not None), default=None)

    # -- internals ---------------------------------------------------------------

    def _forget(self, room: str, identity: str) -> None:
        people = self._rooms[room]
        del people[identity]
        if not people:
            del self._rooms[room]
