"""The directory's cluster-wide view of membership and presence (sans-I/O).

The :class:`Registry` is fed the events nodes publish
(:mod:`falcon_pachinko.membership`) and a clock reading, and answers with what
the directory must do next: ask a node to re-sync, report members lost with
their node, report presence changes. It is the one place presence is decided
for a cluster (see :class:`Registry`). :mod:`falcon_pachinko.directory` runs it
over NATS.

Failure rules:

* a node's events are applied in the order it sent them; a sequence gap, an
  unknown node, or a part of a snapshot out of order asks for a snapshot (with a
  back-off) and nothing is guessed meanwhile;
* a node not heard from for ``ttl_s`` is dropped and its members reported lost;
* a snapshot replaces what was known of its node by difference, so presence
  changes stay exactly once across lost deltas.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import msgspec

from .backends.base import Member
from .membership import Change, Delta, Goodbye, Heartbeat, NodeEvent, Snapshot
from .presence import PresenceChange, PresenceTracker

__all__ = ["Action", "Lost", "Registry", "RequestSync"]


class RequestSync(msgspec.Struct, frozen=True):
    """Ask ``node`` to send a :class:`Snapshot`."""

    node: str


class Lost(msgspec.Struct, frozen=True):
    """A member that disappeared without leaving (its node died or said goodbye).

    ``expired`` is true when the node went silent (a crash): nothing it did last,
    such as a typing indicator, was undone by the node itself.
    """

    room: str
    member: Member
    node: str
    expired: bool = False


Action = RequestSync | Lost | PresenceChange


@dataclass
class _Node:
    seq: int
    last_seen: float
    synced: bool
    sync_requested_at: float | None = None
    #: The snapshot part expected next while a multi-part snapshot arrives.
    next_part: int | None = None
    members: dict[tuple[str, str], Member] = field(default_factory=dict)
    #: While a snapshot arrives: members it has not confirmed yet.
    unconfirmed: set[tuple[str, str]] = field(default_factory=set)
    #: First seen, with members unknown, while the registry was quiet: its first
    #: snapshot reports no arrivals.
    quiet: bool = False


class Registry:
    """The directory's cluster-wide view, fed node events and a clock.

    Presence (:class:`~falcon_pachinko.presence.PresenceTracker`) is decided here,
    once for the cluster: every join, leave, snapshot, goodbye and expiry passes
    through one registry, so each first-in/last-out change is reported once.

    * A snapshot replaces what was known of its node by difference: members it
      confirms cause no change, members it lacks leave, new ones join.
    * The first snapshot of a node first heard of within ``quiet_until``
      (the directory's start-up, while every node re-sends its membership),
      rebuilds presence without reporting arrivals: those people were there
      before the directory (re)started.
    * A graceful goodbye holds the node's members present for ``grace_s``.

    Args:
        ttl_s: A node not heard from for this long is expired.
        resync_backoff_s: Minimum delay between two sync requests to one node.
        grace_s: How long a gracefully departed node's users stay present.
        quiet_until: Until this clock reading, snapshots of unknown nodes report
            no arrivals.
    """

    def __init__(
        self,
        *,
        ttl_s: float,
        resync_backoff_s: float = 1.0,
        grace_s: float = 0.0,
        quiet_until: float | None = None,
    ) -> None:
        if ttl_s <= 0 or resync_backoff_s < 0 or grace_s < 0:
            raise ValueError("ttl_s must be positive, resync_backoff_s and grace_s non-negative")
        self.ttl_s: Final = ttl_s
        self.resync_backoff_s: Final = resync_backoff_s
        self.grace_s: Final = grace_s
        self.quiet_until = quiet_until
        self.presence: Final = PresenceTracker()
        self._nodes: dict[str, _Node] = {}
        self._rooms: dict[str, dict[str, Member]] = {}
        # identity -> connection id -> rooms it is in (for connections_of).
        self._by_identity: dict[str, dict[str, int]] = {}

    # -- input -----------------------------------------------------------------

    def apply(self, event: NodeEvent, now: float) -> list[Action]:
        """Apply one node event; return what the directory must do next."""
        match event:
            case Delta():
                return self._delta(event, now)
            case Snapshot():
                return self._snapshot(event, now)
            case Heartbeat():
                return self._heartbeat(event, now)
            case Goodbye():
                return self._drop(event.node, hold_until=now + self.grace_s if event.hold else None)

    def expire(self, now: float) -> list[Action]:
        """Drop every node not heard from for ``ttl_s``; report its members lost.

        Also releases held users whose grace has ended.
        """
        dead = [n for n, s in self._nodes.items() if now - s.last_seen >= self.ttl_s]
        actions: list[Action] = []
        for node in dead:
            actions.extend(self._drop(node, expired=True))
        actions.extend(self.presence.expire(now))
        return actions

    def heard_from_all(self, now: float) -> None:
        """Count every node as heard from at ``now`` (the directory was cut off)."""
        for state in self._nodes.values():
            state.last_seen = now

    def resync_all(self, now: float) -> list[RequestSync]:
        """Mark every known node unsynced (the directory missed events); ask them all."""
        for state in self._nodes.values():
            state.synced = False
            state.sync_requested_at = now
        return [RequestSync(node) for node in self._nodes]

    # -- queries ---------------------------------------------------------------

    def rooms_by_prefix(self, prefix: str) -> list[str]:
        """Every room with at least one member whose name starts with ``prefix``, sorted."""
        return sorted(room for room in self._rooms if room.startswith(prefix))

    def members(self, room: str) -> list[Member]:
        """The members of ``room`` (empty if it does not exist)."""
        return list(self._rooms.get(room, {}).values())

    def identities(self, room: str) -> list[str]:
        """Who is present in ``room``, sorted, each once (held users included)."""
        return self.presence.identities(room)

    def connections_of(self, identity: str) -> int:
        """How many connections labelled ``identity`` are in at least one room."""
        return len(self._by_identity.get(identity, ()))

    def presence_count(self, room: str, presence: str | None) -> int:
        """How many connections in ``room`` carry the label ``presence``."""
        return sum(1 for m in self._rooms.get(room, {}).values() if m.presence == presence)

    def applied_seq(self, node: str) -> int | None:
        """The node's latest applied delta, ``None`` while unknown or unsynced."""
        state = self._nodes.get(node)
        return state.seq if state is not None and state.synced else None

    @property
    def node_count(self) -> int:
        return len(self._nodes)

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    @property
    def connection_count(self) -> int:
        return sum(len(s.members) for s in self._nodes.values())

    # -- internals -------------------------------------------------------------

    def _delta(self, event: Delta, now: float) -> list[Action]:
        state = self._nodes.get(event.node)
        if state is None:
            # A node's first delta is seq 1; anything later means we missed some.
            state = self._new_node(event.node, now, seq=0, synced=event.seq == 1)
        state.last_seen = now
        if not state.synced:
            return self._request_sync(event.node, state, now)
        if event.seq <= state.seq:
            return []  # a duplicate or a delta the last snapshot already covered
        if event.seq != state.seq + 1:
            state.synced = False
            return self._request_sync(event.node, state, now)
        state.seq = event.seq
        return self._apply_changes(event.node, state, event.changes)

    def _snapshot(self, event: Snapshot, now: float) -> list[Action]:
        state = self._nodes.get(event.node)
        if state is None:
            state = self._new_node(event.node, now, seq=event.seq, synced=False)
        state.last_seen = now
        if state.synced and event.seq < state.seq:
            return []  # (any part of) a snapshot older than what was applied since
        if event.part == 0:
            state.unconfirmed = set(state.members)
            state.seq = event.seq
        elif state.next_part != event.part or state.seq != event.seq:
            # A part went missing (or belongs to another snapshot): start over.
            state.synced, state.next_part = False, None
            return self._request_sync(event.node, state, now)
        actions = self._apply_changes(event.node, state, event.members)
        if state.quiet:
            actions = [a for a in actions if not isinstance(a, PresenceChange)]
        if not event.final:
            state.synced, state.next_part = False, event.part + 1
            return actions
        gone = [Change(False, room, conn) for room, conn in state.unconfirmed]
        actions += self._apply_changes(event.node, state, gone)
        state.synced, state.next_part, state.sync_requested_at = True, None, None
        state.unconfirmed, state.quiet = set(), False
        return actions

    def _heartbeat(self, event: Heartbeat, now: float) -> list[Action]:
        state = self._nodes.get(event.node)
        if state is None:
            state = self._new_node(event.node, now, seq=0, synced=event.seq == 0)
        state.last_seen = now
        if state.synced and event.seq > state.seq:
            state.synced = False  # deltas were lost on the way
        return [] if state.synced else self._request_sync(event.node, state, now)

    def _new_node(self, node: str, now: float, *, seq: int, synced: bool) -> _Node:
        # Whatever event makes a node known while the registry is quiet (a heartbeat
        # often comes before the snapshot asked for), its first snapshot rebuilds
        # presence without announcing arrivals.
        quiet = not synced and self.quiet_until is not None and now < self.quiet_until
        state = self._nodes[node] = _Node(seq=seq, last_seen=now, synced=synced, quiet=quiet)
        return state

    def _request_sync(self, node: str, state: _Node, now: float) -> list[Action]:
        last = state.sync_requested_at
        if last is not None and now - last < self.resync_backoff_s:
            return []
        state.sync_requested_at = now
        return [RequestSync(node)]

    def _drop(
        self, node: str, *, hold_until: float | None = None, expired: bool = False
    ) -> list[Action]:
        state = self._nodes.pop(node, None)
        if state is None:
            return []
        actions: list[Action] = []
        for (room, connection_id), member in state.members.items():
            actions.append(Lost(room, member, node, expired))
            self._remove_from_room(room, connection_id)
            self._unindex(member)
            if hold_until is not None:
                self.presence.hold(room, member.presence, connection_id, hold_until)
            elif (change := self.presence.remove(room, member.presence, connection_id)) is not None:
                actions.append(change)
        state.members.clear()
        return actions

    def _apply_changes(self, node: str, state: _Node, changes: Iterable[Change]) -> list[Action]:
        actions: list[Action] = []
        for change in changes:
            if change.joined:
                actions.extend(self._join(state, change))
            else:
                actions.extend(self._leave(state, change))
        return actions

    def _join(self, state: _Node, change: Change) -> list[PresenceChange]:
        key = (change.room, change.connection_id)
        state.unconfirmed.discard(key)
        member = Member(connection_id=change.connection_id, presence=change.presence)
        known = state.members.get(key)
        if known == member:
            return []
        out: list[PresenceChange] = []
        if known is not None:  # relabelled: the old identity's connection is gone
            out.extend(self._leave(state, Change(False, change.room, change.connection_id)))
        state.members[key] = member
        self._rooms.setdefault(change.room, {})[change.connection_id] = member
        self._index(member)
        arrived = self.presence.add(change.room, member.presence, change.connection_id)
        return out if arrived is None else [*out, arrived]

    def _leave(self, state: _Node, change: Change) -> list[PresenceChange]:
        gone = state.members.pop((change.room, change.connection_id), None)
        if gone is None:
            return []
        self._remove_from_room(change.room, change.connection_id)
        self._unindex(gone)
        left = self.presence.remove(change.room, gone.presence, change.connection_id)
        return [] if left is None else [left]

    def _index(self, member: Member) -> None:
        if member.presence is not None:
            rooms = self._by_identity.setdefault(member.presence, {})
            rooms[member.connection_id] = rooms.get(member.connection_id, 0) + 1

    def _unindex(self, member: Member) -> None:
        identity = member.presence
        rooms = self._by_identity.get(identity) if identity is not None else None
        if identity is None or rooms is None or member.connection_id not in rooms:
            return
        rooms[member.connection_id] -= 1
        if rooms[member.connection_id] == 0:
            del rooms[member.connection_id]
        if not rooms:
            del self._by_identity[identity]

    def _remove_from_room(self, room: str, connection_id: str) -> None:
        members = self._rooms.get(room)
        if members is None:
            return
        members.pop(connection_id, None)
        if not members:
            del self._rooms[room]  # a room with no members does not exist
