"""The membership directory: the cluster-wide view of rooms, served over NATS.

Run one per cluster next to the NATS backends (the chat's rooms service does)::

    directory = Directory(nc, Subjects("chat"), ttl_s=10, on_lost=announce_left)
    await directory.start()
    ...
    await directory.stop()

* Node events arrive on one subscription and are applied in arrival order, so one
  node's deltas, snapshots and heartbeats are applied in the order it sent them.
* Queries are answered through a ``nats.micro`` service (discovery, ``$SRV.PING``
  and stats come with it). A query names the asker's latest delta; the answer
  waits, briefly and boundedly, until that delta is applied (read-your-writes).
* State lives in memory and is rebuilt from the nodes, which are the truth: at
  start the directory asks every node for a snapshot, and any node it does not
  know, or whose sequence shows lost deltas, is asked again.
* A node silent for ``ttl_s`` is expired and its members handed to ``on_lost``.
* Presence is decided here, once for the cluster: each first-in/last-out change
  (a clean leave at once, an expired node's users after the TTL, a gracefully
  departed node's users after ``grace_s`` unless they came back) goes to
  ``on_presence``, in order (those that follow one another within ``batch_s``
  together, :class:`~falcon_pachinko.batcher.PresenceBatcher`). For
  ``startup_quiet_s`` after start, the snapshots that rebuild the view report no
  arrivals: those users were already there.

Replicas. With a ``lease`` (:class:`~falcon_pachinko.backends.nats.KvLease`),
any number of directories run side by side, and one is active
(:class:`~falcon_pachinko.election.Election`). Every replica applies every event
and answers queries; only the active one reports presence and lost members, and
after each batch it says on ``<prefix>._dir.announced`` what it reported. A
standby keeps what it decided and no report has covered
(:class:`~falcon_pachinko.handover.Handover`); when it takes over (the active
stopped, released its lease, or stopped renewing it for ``lease_ttl_s``), it
reports those, so a change is reported once across a takeover. Lost members
(``on_lost``) decided while standing by are not reported again: what they undo
(a typing indicator) expires by itself. Without a lease the directory is
active alone, as one per cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import msgspec
import nats.errors
import nats.micro
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.request import Request
from nats.micro.service import Service

from .backends.nats import flush_sent, new_node_id
from .batcher import PresenceBatcher
from .election import Election, LeaseStore
from .handover import Announced, Handover
from .membership import (
    ConnectionsQuery,
    CountReply,
    MembersQuery,
    MembersReply,
    PresenceQuery,
    PresenceReply,
    RoomsQuery,
    RoomsReply,
    event_decoder,
)
from .presence import PresenceChange, PresenceHandler
from .registry import Action, Lost, Registry, RequestSync
from .subjects import Subjects

__all__ = ["Directory", "LostHandler"]

log = structlog.get_logger(__name__)

LostHandler = Callable[[list[Lost]], Awaitable[None]]
Q = TypeVar("Q", RoomsQuery, MembersQuery, PresenceQuery, ConnectionsQuery)

_encoder: Final = msgspec.json.Encoder()
_FLUSH_TIMEOUT_S: Final = 2.0
_rooms_query: Final = msgspec.json.Decoder(RoomsQuery)
_members_query: Final = msgspec.json.Decoder(MembersQuery)
_presence_query: Final = msgspec.json.Decoder(PresenceQuery)
_connections_query: Final = msgspec.json.Decoder(ConnectionsQuery)
_announced: Final = msgspec.json.Decoder(Announced)


class Directory:
    """Serves the membership registry on NATS.

    Args:
        nc: A connected NATS client (the caller owns it).
        subjects: The subject naming shared with the nodes.
        ttl_s: Seconds without a heartbeat after which a node is expired.
        on_lost: Called with members of expired (or departed) nodes.
        on_presence: Called with each presence change, in order.
        grace_s: How long the users of a node that said a graceful goodbye stay
            present (a rolling restart: its clients reconnect elsewhere).
        startup_quiet_s: After start, how long snapshots report no arrivals.
        expiry_interval_s: How often expiry is checked; a dead node's members are
            reported within ``ttl_s + expiry_interval_s``.
        query_wait_s: How long a query may wait for the asker's own delta.
        clock: Monotonic clock (injected in tests).
        name: The ``nats.micro`` service name.
        batch_s: Presence changes that follow one another within this long are
            reported together (one event-loop turn); 0 reports each at once.
        lease: Run as one of several replicas, the active one chosen by this
            lease; ``None``: this directory is the only one, always active.
        lease_ttl_s: A lease not renewed for this long passes to a standby.
        handover_horizon_s: How long a standby keeps a decision the active did
            not report while the active is seen alive
            (:class:`~falcon_pachinko.handover.Handover`).
    """

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        *,
        ttl_s: float = 10.0,
        on_lost: LostHandler | None = None,
        on_presence: PresenceHandler | None = None,
        grace_s: float = 5.0,
        startup_quiet_s: float = 5.0,
        expiry_interval_s: float = 1.0,
        query_wait_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        name: str = "pachinko-directory",
        batch_s: float = 0.0,
        lease: LeaseStore | None = None,
        lease_ttl_s: float = 3.0,
        handover_horizon_s: float = 5.0,
    ) -> None:
        self.registry: Final = Registry(ttl_s=ttl_s, grace_s=grace_s)
        self._nc = nc
        self._subjects = subjects
        self.on_lost = on_lost
        self.on_presence = on_presence
        self._startup_quiet_s = startup_quiet_s
        self._expiry_interval_s = expiry_interval_s
        self._query_wait_s = query_wait_s
        self._clock = clock
        self._name = name
        self._applied = asyncio.Condition()
        #: This replica, as its lease and its reports name it.
        self.replica: Final = f"{name}-{new_node_id()[:12]}"
        self._batcher = PresenceBatcher(
            self._report_one, window_s=batch_s, after_batch=self._reported_batch
        )
        self.handover: Final = Handover(horizon_s=handover_horizon_s)
        self.election: Final = (
            None
            if lease is None
            else Election(
                lease,
                self.replica,
                ttl_s=lease_ttl_s,
                on_change=self._role_changed,
                on_holder_alive=self.handover.holder_alive,
                clock=clock,
            )
        )
        #: Changes reported after a takeover, owed by the replica before.
        self.handed_over = 0
        #: Reporting presence (set once a takeover has reported what was owed).
        self._reporting = lease is None
        self._announced_sub: Subscription | None = None
        self._sub: Subscription | None = None
        self._service: Service | None = None
        self._expiry: asyncio.Task[None] | None = None
        self.events_applied = 0
        self.events_rejected = 0
        #: Expiry checks run (skipped ones after a stall excluded).
        self.expiry_checks = 0

    async def start(self) -> None:
        """Subscribe, start answering queries, and ask every node for a snapshot."""
        # Quiet from the first event on: whatever arrives before the resync request
        # comes from a node that was there before this directory.
        self.registry.quiet_until = self._clock() + self._startup_quiet_s
        self._sub = await self._nc.subscribe(self._subjects.events, cb=self._on_event)
        if self.election is not None:
            self._announced_sub = await self._nc.subscribe(
                self._subjects.announced, cb=self._on_announced
            )
        self._service = await nats.micro.add_service(
            self._nc, name=self._name, version="1.0.0", description="room membership directory"
        )
        await self._service.add_endpoint(
            name="rooms", subject=self._subjects.query_rooms, handler=self._on_rooms_query
        )
        await self._service.add_endpoint(
            name="members", subject=self._subjects.query_members, handler=self._on_members_query
        )
        await self._service.add_endpoint(
            name="connections",
            subject=self._subjects.query_connections,
            handler=self._on_connections_query,
        )
        await self._service.add_endpoint(
            name="presence",
            subject=self._subjects.query_presence,
            handler=self._on_presence_query,
        )
        self._expiry = asyncio.create_task(self._expire_loop(), name="pachinko-directory-expiry")
        await self.request_resync()
        # Until the server has the endpoints' subscriptions, queries would get
        # "no responders": make them effective before start() returns.
        await flush_sent(self._nc, _FLUSH_TIMEOUT_S)
        if self.election is not None:
            await self.election.start()
        log.info("pachinko.directory_started", ttl_s=self.registry.ttl_s, replica=self.replica)

    @property
    def active(self) -> bool:
        """Whether this replica reports presence now (always, without a lease)."""
        return self.election is None or (self._reporting and self.election.active)

    async def stop(self) -> None:
        """Report what is held, let the lease go, stop answering and expiring.

        The NATS client stays open.
        """
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
            self._expiry = None
        # What was decided last is reported (and said to be) before a standby
        # may take over: the lease goes after the batch.
        await self._batcher.close()
        if self.election is not None:
            await self.election.stop()
        if self._announced_sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._announced_sub.unsubscribe()
            self._announced_sub = None
        if self._service is not None:
            with contextlib.suppress(Exception):
                await self._service.stop()
            self._service = None
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None

    async def request_resync(self) -> None:
        """Ask every node to re-send its membership (after a start or a reconnect).

        The nodes were not heard while the directory was cut off, through no fault
        of theirs: their silence starts counting again now, and a node learnt anew
        in the next ``startup_quiet_s`` rebuilds presence without arrivals.
        """
        now = self._clock()
        self.registry.quiet_until = now + self._startup_quiet_s
        self.registry.heard_from_all(now)
        for action in self.registry.resync_all(now):
            log.debug("pachinko.directory_resync", node=action.node)
        await self._publish_quietly(self._subjects.sync_all)

    # -- events ----------------------------------------------------------------

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = event_decoder.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.events_rejected += 1
            log.warning("pachinko.directory_bad_event", error=str(exc)[:200])
            return
        actions = self.registry.apply(event, self._clock())
        self.events_applied += 1
        async with self._applied:
            self._applied.notify_all()
        await self._perform(actions)

    async def _expire_loop(self) -> None:
        interval = self._expiry_interval_s
        last = self._clock()
        cut_off = False
        while True:
            await asyncio.sleep(interval)
            now, previous = self._clock(), last
            last = now
            if not self._nc.is_connected:
                # Our own link is down, not the nodes: their silence proves nothing.
                cut_off = True
                continue
            if cut_off:
                # Back: every node's silence starts counting again from now.
                cut_off = False
                self.registry.heard_from_all(now)
                continue
            if now - previous > 2 * interval:
                # This loop stalled (a long pause, an overloaded host): heartbeats
                # may be waiting unread. Expiring now would declare live gateways
                # dead; apply what queued up first and check on the next round.
                log.warning("pachinko.directory_stalled", seconds=round(now - previous, 2))
                continue
            self.expiry_checks += 1
            await self._perform(self.registry.expire(now))

    async def _perform(self, actions: list[Action]) -> None:
        lost = [a for a in actions if isinstance(a, Lost)]
        for action in actions:
            if isinstance(action, RequestSync):
                await self._publish_quietly(self._subjects.sync_node(action.node))
        if lost:
            await self._report_lost(lost)
        for action in actions:
            if isinstance(action, PresenceChange):
                await self._report_presence(action)

    async def _report_presence(self, change: PresenceChange) -> None:
        if self.active:
            await self._batcher(change)
        else:
            self.handover.decided(change, self._clock())

    async def _report_one(self, change: PresenceChange) -> None:
        if self.on_presence is None:
            return
        try:
            await self.on_presence(change)
        except Exception:
            log.exception("pachinko.directory_on_presence_failed")

    async def _reported_batch(self, batch: list[PresenceChange]) -> None:
        """Tell the standbys what was reported (they owe it no more)."""
        if self.election is None:
            return
        data = _encoder.encode(Announced(by=self.replica, changes=batch))
        await self._publish_quietly(self._subjects.announced, data)

    async def _on_announced(self, msg: Msg) -> None:
        try:
            announced = _announced.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            log.warning("pachinko.directory_bad_announced")
            return
        if announced.by != self.replica:
            self.handover.announced(announced.changes, self._clock())

    async def _role_changed(self, active: bool) -> None:
        if not active:
            self._reporting = False
            log.info("pachinko.directory_standing_by", replica=self.replica)
            return
        # Reports the old holder sent before it let go are in flight to this
        # replica: take them in before deciding what is still owed.
        await flush_sent(self._nc, _FLUSH_TIMEOUT_S)
        sub = self._announced_sub
        for _ in range(1000):
            if sub is None or sub.pending_msgs == 0:
                break
            await asyncio.sleep(0)
        owed = self.handover.take()
        self.handed_over += len(owed)
        log.info("pachinko.directory_active", replica=self.replica, owed=len(owed))
        # Changes decided while the owed ones are passed on join the ledger and
        # follow them: reporting starts, in order, once nothing is owed.
        while owed:
            for change in owed:
                await self._batcher(change)
            owed = self.handover.take()
        self._reporting = self.election is not None and self.election.active

    async def _report_lost(self, lost: list[Lost]) -> None:
        log.info("pachinko.directory_members_lost", count=len(lost))
        if self.on_lost is None or not self.active:
            return
        try:
            await self.on_lost(lost)
        except Exception:
            log.exception("pachinko.directory_on_lost_failed")

    # -- queries ---------------------------------------------------------------

    async def _on_rooms_query(self, req: Request) -> None:
        query = await self._read_query(req, _rooms_query, "rooms")
        if query is not None:
            await self._answer(req, RoomsReply(self.registry.rooms_by_prefix(query.prefix)))

    async def _on_members_query(self, req: Request) -> None:
        query = await self._read_query(req, _members_query, "members")
        if query is not None:
            await self._answer(req, MembersReply(self.registry.members(query.room)))

    async def _on_presence_query(self, req: Request) -> None:
        query = await self._read_query(req, _presence_query, "presence")
        if query is not None:
            await self._answer(req, PresenceReply(self.registry.identities(query.room)))

    async def _on_connections_query(self, req: Request) -> None:
        query = await self._read_query(req, _connections_query, "connections")
        if query is not None:
            await self._answer(req, CountReply(self.registry.connections_of(query.identity)))

    async def _read_query(
        self, req: Request, decoder: msgspec.json.Decoder[Q], kind: str
    ) -> Q | None:
        """Decode a query (answering 400 if it is malformed) once the asker is caught up."""
        try:
            query = decoder.decode(req.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            await req.respond_error("400", f"invalid {kind} query")
            return None
        await self._await_asker(query.node, query.seq)
        return query

    async def _answer(self, req: Request, reply: msgspec.Struct) -> None:
        await req.respond(_encoder.encode(reply))

    async def _await_asker(self, node: str | None, seq: int) -> None:
        if node is None or seq == 0:
            return

        def caught_up() -> bool:
            applied = self.registry.applied_seq(node)
            return applied is not None and applied >= seq

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._query_wait_s), self._applied:
                await self._applied.wait_for(caught_up)

    async def _publish_quietly(self, subject: str, data: bytes = b"") -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._nc.publish(subject, data)
