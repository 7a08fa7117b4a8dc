"""Cluster membership: what nodes report, and the directory's view of it (sans-I/O).

A *node* is a process that holds WebSocket connections (a gateway). The
*directory* is the service that keeps the cluster-wide view of which connection
is in which room. Nodes are the source of truth for their own connections; the
directory holds soft state rebuilt from them::

    node                                 directory
    ----                                 ---------
    Delta(seq=n)   joins/leaves, batched ──▶ applied if seq == last + 1
    Heartbeat(seq) every interval         ──▶ liveness; a seq ahead of ours = lost deltas
    Snapshot(seq)  on request             ──▶ replaces everything known of the node
    Goodbye        at shutdown            ──▶ the node and its members are gone
                                     ◀── RequestSync(node): a gap, an unknown node,
                                          or a directory that just (re)started

A node that stops heartbeating for ``ttl_s`` is expired: its members are reported
as :class:`Lost` so the application can announce them.

Everything here is pure: events and a clock reading go in, actions come out.
:mod:`falcon_pachinko.backends.nats` and :mod:`falcon_pachinko.directory` run it
over NATS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import msgspec

from .backends.base import Member
from .presence import PresenceChange, PresenceTracker

__all__ = [
    "Action",
    "Change",
    "ConnectionsQuery",
    "CountReply",
    "Delta",
    "Goodbye",
    "Heartbeat",
    "Lost",
    "MembersQuery",
    "MembersReply",
    "NodeEvent",
    "PresenceQuery",
    "PresenceReply",
    "Registry",
    "Reporter",
    "RequestSync",
    "RoomsQuery",
    "RoomsReply",
    "SNAPSHOT_PART_BYTES",
    "Snapshot",
    "event_decoder",
]


# -- wire messages (JSON via msgspec) ------------------------------------------


class Change(msgspec.Struct, frozen=True, array_like=True):
    """One membership change: ``joined`` true for a join, false for a leave."""

    joined: bool
    room: str
    connection_id: str
    presence: str | None = None


class Delta(msgspec.Struct, frozen=True, kw_only=True, tag="delta", tag_field="kind"):
    """Changes since the node's previous delta, in the order they happened."""

    node: str
    seq: int
    changes: list[Change]


class Snapshot(msgspec.Struct, frozen=True, kw_only=True, tag="snapshot", tag_field="kind"):
    """Everything the node holds, as of its delta ``seq``.

    A large snapshot is sent in parts (``part`` 0, 1, ... up to the one marked
    ``final``) so that no message exceeds the NATS payload limit.
    """

    node: str
    seq: int
    members: list[Change]
    part: int = 0
    final: bool = True


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True, tag="heartbeat", tag_field="kind"):
    """The node is alive; ``seq`` is its latest delta."""

    node: str
    seq: int


class Goodbye(msgspec.Struct, frozen=True, kw_only=True, tag="goodbye", tag_field="kind"):
    """The node is shutting down; whatever it still holds is gone.

    ``hold`` (a graceful shutdown, whose clients were told to reconnect) asks the
    directory to keep the node's users present for its grace period, so that
    users who reconnect elsewhere meanwhile are neither announced as left nor as
    joined again.
    """

    node: str
    seq: int
    hold: bool = False


NodeEvent = Delta | Snapshot | Heartbeat | Goodbye

#: Decodes every event a node publishes (untrusted input for the directory).
event_decoder: Final = msgspec.json.Decoder(NodeEvent)


class RoomsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Rooms whose name starts with ``prefix``.

    ``node``/``seq`` name the asking node's latest delta, so the answer reflects
    the asker's own changes (read-your-writes).
    """

    prefix: str = ""
    node: str | None = None
    seq: int = 0


class RoomsReply(msgspec.Struct, frozen=True):
    rooms: list[str]


class MembersQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The members of ``room``; ``node``/``seq`` as in :class:`RoomsQuery`."""

    room: str
    node: str | None = None
    seq: int = 0


class MembersReply(msgspec.Struct, frozen=True):
    members: list[Member]


class PresenceQuery(MembersQuery, frozen=True, kw_only=True):
    """Who is present in ``room`` (identities, each once); fields as :class:`MembersQuery`."""


class PresenceReply(msgspec.Struct, frozen=True):
    identities: list[str]


class ConnectionsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """How many connections carry ``identity``, cluster-wide (in at least one room)."""

    identity: str
    node: str | None = None
    seq: int = 0


class CountReply(msgspec.Struct, frozen=True):
    count: int


# -- node side -----------------------------------------------------------------


#: Target size of one snapshot part: a quarter of NATS's default 1 MiB payload limit.
SNAPSHOT_PART_BYTES: Final = 256 * 1024


def _encoded_size(change: Change) -> int:
    # JSON array of a bool and up to three strings; escapes can double a string.
    text = len(change.room) + len(change.connection_id) + len(change.presence or "")
    return 2 * text + 24


class Reporter:
    """A node's membership as reported to the directory: local truth plus a sequence.

    Args:
        node_id: The node's cluster-unique id (new for every process start).
    """

    def __init__(self, node_id: str) -> None:
        self.node_id: Final = node_id
        self.seq = 0
        self._members: dict[tuple[str, str], Change] = {}
        self._pending: list[Change] = []

    @property
    def pending(self) -> bool:
        """Whether changes wait to be sent."""
        return bool(self._pending)

    def record(self, joined: bool, room: str, member: Member) -> None:
        """Note one join or leave; it goes out with the next delta."""
        change = Change(joined, room, member.connection_id, member.presence)
        key = (room, member.connection_id)
        if joined:
            self._members[key] = change
        else:
            self._members.pop(key, None)
        self._pending.append(change)

    def take_delta(self) -> Delta | None:
        """The pending changes as the next delta (``None`` when there are none)."""
        if not self._pending:
            return None
        self.seq += 1
        delta = Delta(node=self.node_id, seq=self.seq, changes=self._pending)
        self._pending = []
        return delta

    def snapshot(self) -> Snapshot:
        """Everything held now. Take pending changes as a delta first."""
        if self._pending:
            raise RuntimeError("take the pending delta before a snapshot")
        return Snapshot(node=self.node_id, seq=self.seq, members=list(self._members.values()))

    def snapshot_parts(self, max_bytes: int = SNAPSHOT_PART_BYTES) -> list[Snapshot]:
        """:meth:`snapshot` split into parts of roughly at most ``max_bytes`` each."""
        if self._pending:
            raise RuntimeError("take the pending delta before a snapshot")
        chunks: list[list[Change]] = [[]]
        size = 0
        for change in self._members.values():
            cost = _encoded_size(change)
            if chunks[-1] and size + cost > max_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(change)
            size += cost
        last = len(chunks) - 1
        return [
            Snapshot(node=self.node_id, seq=self.seq, members=c, part=i, final=i == last)
            for i, c in enumerate(chunks)
        ]

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(node=self.node_id, seq=self.seq)

    def goodbye(self, *, hold: bool = False) -> Goodbye:
        return Goodbye(node=self.node_id, seq=self.seq, hold=hold)


# -- directory side ------------------------------------------------------------


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
    #: First seen by a snapshot while the registry was quiet: report no arrivals.
    quiet: bool = False


class Registry:
    """The directory's cluster-wide view, fed node events and a clock.

    Presence (:class:`~falcon_pachinko.presence.PresenceTracker`) is decided here,
    once for the cluster: every join, leave, snapshot, goodbye and expiry passes
    through one registry, so each first-in/last-out change is reported once.

    * A snapshot replaces what was known of its node by difference: members it
      confirms cause no change, members it lacks leave, new ones join.
    * A snapshot of a node the registry did not know, within ``quiet_until``
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
            state = self._nodes[event.node] = _Node(seq=0, last_seen=now, synced=event.seq == 1)
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
            state = self._nodes[event.node] = _Node(seq=event.seq, last_seen=now, synced=False)
            state.quiet = self.quiet_until is not None and now < self.quiet_until
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
            state = self._nodes[event.node] = _Node(seq=0, last_seen=now, synced=event.seq == 0)
        state.last_seen = now
        if state.synced and event.seq > state.seq:
            state.synced = False  # deltas were lost on the way
        return [] if state.synced else self._request_sync(event.node, state, now)

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
