"""Cluster membership: what nodes report, and how they ask (sans-I/O).

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

This module holds the wire messages (events, queries, replies) and the node's
side, :class:`Reporter`; the directory's side is :mod:`falcon_pachinko.registry`.
Everything here is pure. :mod:`falcon_pachinko.backends.nats.presence` runs the
reporter over NATS.
"""

from __future__ import annotations

from typing import Final

import msgspec

from .backends.base import Member

__all__ = [
    "Change",
    "ConnectionsQuery",
    "CountReply",
    "Delta",
    "Goodbye",
    "Heartbeat",
    "MembersQuery",
    "MembersReply",
    "NodeEvent",
    "PresenceQuery",
    "PresenceReply",
    "Reporter",
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
