"""The connection manager: this process's sockets and their rooms.

The manager is the only owner of local membership. It subscribes its backend to a
room when the first local connection joins it and unsubscribes when the last one
leaves, so a process holds exactly one subscription per room. A room with no
members does not exist: it is listed nowhere.

Broadcasting encodes a message once; the backend carries those bytes to every
process with members in the room, and each process decodes them to text once and
offers that same string to each local member's outbound queue.

Durable rooms: ``broadcast_to_room(..., persist=True)`` stores the message in the
backend's history before anyone receives it; every process stamps it with its
position (``id``, ``seq``, ``ts``) once, on arrival, and offers the stamped bytes
to its members. ``join_room(..., history=n | since=seq)`` makes the connection
catch up (see :mod:`falcon_pachinko.replay`). A room's live durable messages are
watched for loss (:class:`~falcon_pachinko.history.RoomFeed`): when some were
lost on the way here, the room's local members are closed with
:attr:`CloseCode.RESYNC` and resume from their cursors, rather than silently
missing messages.

Limits it keeps: rooms per connection (``limits.max_rooms``; one more raises
:class:`~falcon_pachinko.errors.RoomLimitExceeded` and changes nothing) and
connections per process (``max_connections``; the route refuses a handshake with
HTTP 503 while :attr:`WebSocketConnectionManager.full`). Every refusal is counted
in :class:`ManagerStats`, where an application's metrics read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final, cast

import msgspec
import structlog

from .backends.base import Backend, BackendSink, History, Member
from .backends.memory import InProcessBackend
from .close_codes import CloseCode
from .connection import Connection, ConnectionLimits, encode_text
from .drain import spread
from .errors import BackendError, ConnectionClosed, HistoryUnavailable, RoomLimitExceeded
from .history import (
    Appended,
    Feed,
    HistoryBatch,
    Page,
    Position,
    RoomFeed,
    Stamp,
    Stored,
    stamp_top_level,
)
from .latency import LatencyHistogram
from .presence import PresenceChange, PresenceHandler
from .replay import (
    Pending,
    Render,
    Replay,
    Replays,
    coverage,
    hold,
    read,
    render_default,
    stamp_batch,
)
from .session import Send
from .subjects import check_room

__all__ = ["ManagerStats", "WebSocketConnectionManager"]

log = structlog.get_logger(__name__)

PresenceFn = Callable[[Connection], str | None]


@dataclass
class ManagerStats:
    """Running totals of one manager, for metrics (plain counters, no locking needed).

    Attributes:
        connections_opened: Connections registered since start.
        frames_received: Frames received from clients.
        frames_delivered: Room and direct messages queued for local connections.
        slow_consumers: Connections that ended closed because their outbound queue
            overflowed (counted when they are unregistered).
        frames_rate_limited: Received frames refused for being over their
            connection's message budget (never dispatched).
        rate_limit_closes: Connections closed with ``POLICY_VIOLATION`` for
            flooding: sending on far past their budget.
        refused_full: Handshakes refused (HTTP 503) because the process held
            ``max_connections`` already; they never reached a resource.
        connect_timeouts: Handshakes refused (HTTP 503) because ``on_connect``
            ran longer than ``connect_timeout_s``.
        refused_draining: Handshakes refused (HTTP 503) because the process was
            draining (:meth:`WebSocketConnectionManager.drain`).
        drained: Connections closed by a drain (1012, spread over its window).
    """

    connections_opened: int = 0
    frames_received: int = 0
    frames_delivered: int = 0
    slow_consumers: int = 0
    frames_rate_limited: int = 0
    rate_limit_closes: int = 0
    refused_full: int = 0
    connect_timeouts: int = 0
    refused_draining: int = 0
    drained: int = 0
    #: Messages stored by ``persist=True`` broadcasts of this process.
    messages_stored: int = 0
    #: ``persist=True`` broadcasts whose idempotency key had been used already.
    duplicates: int = 0
    #: Connections closed with ``RESYNC``: their room lost live messages on the way
    #: here, their catch-up overflowed, or their history could not be read.
    resyncs: int = 0
    #: From a stored message's ``ts`` (the appending process's wall clock) to its
    #: delivery here, once per message per process: the end-to-end latency of
    #: durable traffic, across processes (clocks apart count as 0).
    delivery_latency: LatencyHistogram = field(default_factory=LatencyHistogram)


class WebSocketConnectionManager(BackendSink):
    """Tracks this process's connections and routes room traffic through a backend.

    Args:
        backend: Where room traffic and membership go; the in-process backend when
            ``None``.
        limits: Per-connection limits (outbound queue, message budget, rooms,
            ``on_connect`` time) applied to every connection.
        max_connections: Connections this process holds at most; a handshake
            beyond them is refused with HTTP 503 before any resource exists.
            ``None`` or 0: no limit.
        on_presence: Called with each first-in/last-out :class:`PresenceChange`
            when this process decides presence (the in-process backend). With a
            networked backend presence is decided by the membership directory, and
            its own ``on_presence`` is called instead, once for the cluster.
        stamp: Adds a durable message's position to its JSON text, once per
            message per process; by default :func:`~falcon_pachinko.history.stamp_top_level`.
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        limits: ConnectionLimits | None = None,
        max_connections: int | None = None,
        on_presence: PresenceHandler | None = None,
        stamp: Stamp = stamp_top_level,
    ) -> None:
        if max_connections is not None and max_connections < 0:
            raise ValueError("max_connections must be positive, or 0/None for no limit")
        self.backend: Final[Backend] = backend if backend is not None else InProcessBackend()
        self.limits: Final = limits if limits is not None else ConnectionLimits()
        self.max_connections: Final = max_connections or None
        #: See ``on_presence`` above; may be set after construction.
        self.on_presence: PresenceHandler | None = on_presence
        self._connections: dict[str, Connection] = {}
        self._presence: dict[str, str | None] = {}
        self._rooms: dict[str, dict[str, Connection]] = {}
        self._memberships: dict[str, set[str]] = {}
        # Serialises subscribe/unsubscribe per room; entries live while in use.
        self._room_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._started = False
        self.stats: Final = ManagerStats()
        self._stamp = stamp
        self._feeds: dict[str, RoomFeed] = {}
        self._replays = Replays()
        #: Set by :meth:`drain`: new handshakes are refused (HTTP 503).
        self.draining = False

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start the backend. Called at ASGI startup by :func:`install`."""
        if not self._started:
            await self.backend.start(self)
            self._started = True

    def begin_shutdown(self) -> None:
        """Say that this process is going away and its clients will reconnect elsewhere.

        Call it when shutdown starts, before connections are closed (on SIGTERM):
        departures are then not announced one by one; the process's users stay
        present for the directory's grace period, so a user who reconnects to
        another process meanwhile is neither announced as left nor as joined.
        :meth:`stop` calls it too. Idempotent.
        """
        self.backend.begin_shutdown()

    async def drain(self, window_s: float, *, rng: random.Random | None = None) -> None:
        """Close every connection with 1012 (service restart), spread over ``window_s``.

        Call it when shutdown starts, after readiness fails: presence is held
        (:meth:`begin_shutdown`), new handshakes are refused with HTTP 503 and
        ``Retry-After``, and each connection is closed at its own moment of the
        window (:func:`falcon_pachinko.drain.spread`), after what was queued for
        it, so its client reconnects elsewhere while the others still chat,
        instead of every client at once. Returns once the last close is started;
        :meth:`stop` closes whatever connected meanwhile.
        """
        self.begin_shutdown()
        self.draining = True
        conns = list(self._connections.values())
        rng = rng if rng is not None else random.Random()
        rng.shuffle(conns)
        loop = asyncio.get_running_loop()
        start = loop.time()
        log.info("pachinko.drain_started", connections=len(conns), window_s=window_s)
        for conn, offset in zip(conns, spread(len(conns), window_s, rng), strict=True):
            if (wait := start + offset - loop.time()) > 0:
                await asyncio.sleep(wait)
            # One still in on_connect would be refused (HTTP 403, which a client
            # takes as final): it is not accepted, and stop() closes it with 1012.
            if not conn.closed and conn.accepted:
                await conn.close(CloseCode.SERVICE_RESTART, "server restarting")
                self.stats.drained += 1
        log.info("pachinko.drain_finished", drained=self.stats.drained)

    async def stop(self) -> None:
        """Close every local connection (1012, service restart) and stop the backend."""
        self.begin_shutdown()
        for conn in list(self._connections.values()):
            conn.abort(CloseCode.SERVICE_RESTART, "server shutting down")
        for conn in list(self._connections.values()):
            await conn.finish()
        if self._started:
            await self.backend.stop()
            self._started = False

    # -- registry (used by the route adapter) --------------------------------

    def new_connection_id(self) -> str:
        """A cluster-unique id for a new connection of this process.

        With the NATS backend the id names this process, so that a direct message
        for the connection goes to this process alone.
        """
        return self.backend.broker.new_connection_id()

    @property
    def full(self) -> bool:
        """``True`` while the process holds ``max_connections`` connections.

        Checked by the route before a new connection is registered, with no
        ``await`` in between, so a refused handshake never counts itself and two
        concurrent handshakes cannot both take the last place.
        """
        limit = self.max_connections
        return limit is not None and len(self._connections) >= limit

    def register(self, conn: Connection, presence: str | None = None) -> None:
        """Make ``conn`` known to the manager (before ``on_connect`` runs)."""
        self._connections[conn.id] = conn
        self._presence[conn.id] = presence
        self._memberships[conn.id] = set()
        self.stats.connections_opened += 1

    def set_presence(self, conn: Connection, presence: str | None) -> None:
        """Attach an application label (a user name, say) reported with memberships."""
        self._presence[conn.id] = presence

    async def unregister(self, conn: Connection) -> None:
        """Forget ``conn``, leaving every room it is still in."""
        if conn.close_code == CloseCode.SLOW_CONSUMER:
            self.stats.slow_consumers += 1  # counted once, off the delivery path
        for room in sorted(self._memberships.get(conn.id, ())):
            await self.leave_room(conn, room)
        for room in self._replays.rooms_of(conn.id):
            self._replays.forget(room, conn.id)
        self._connections.pop(conn.id, None)
        self._presence.pop(conn.id, None)
        self._memberships.pop(conn.id, None)

    def rooms_of(self, conn: Connection) -> frozenset[str]:
        """The rooms ``conn`` is a member of."""
        return frozenset(self._memberships.get(conn.id, ()))

    # -- rooms ---------------------------------------------------------------

    async def join_room(
        self,
        conn: Connection,
        room: str,
        *,
        history: int = 0,
        since: int | None = None,
        render: Render = render_default,
    ) -> None:
        """Add ``conn`` to ``room``; room traffic reaches it once this returns.

        Joining a room twice is a no-op.

        With ``history`` or ``since`` the connection catches up on the durable
        room: it is sent the last ``history`` stored messages, or every message
        after ``since`` (see :mod:`falcon_pachinko.replay`), as frames that
        ``render`` makes of :class:`~falcon_pachinko.history.HistoryBatch`
        objects, then the live messages that arrived meanwhile, with no gap and no
        duplicate. Joined before the accept (in ``on_connect``), it catches up
        right after the frames ``on_connect`` sent; joined later, before this
        returns.

        Raises:
            ValueError: ``room`` is empty, ``conn`` is not registered, or
                ``history`` is negative.
            RoomLimitExceeded: ``conn`` is in ``limits.max_rooms`` rooms already
                (nothing changed).
            HistoryUnavailable: ``history``/``since`` given, but the backend
                keeps no history.
        """
        _check_room(room)
        replay = self._replay_of(history, since)
        if conn.id not in self._connections:
            raise ValueError("connection is not registered with this manager")
        if room in self._memberships[conn.id]:
            return
        self._check_room_limit(self._memberships[conn.id])
        if not await self._add_member(conn, room, replay, render):
            return
        if replay is None:
            await self._join_live(conn, room)
        await self.backend.presence.member_joined(room, self._member(conn))
        if replay is not None and conn.accepted:
            await self.catch_up(conn)

    async def _join_live(self, conn: Connection, room: str) -> None:
        # A join without history has every message after the room's base, live.
        # When this process knows no base yet (the room's first member here), the
        # store's newest message is one: read after subscribing, so nothing stored
        # later can be taken as seen.
        feed = self._feeds.get(room)
        history = self.backend.history
        if feed is None or history is None:
            return
        if feed.base is None:
            try:
                stored = await history.last_seq(room)
            except BackendError:
                stored = None  # unknown: a recheck resumes the room's members
            if stored is not None and feed is self._feeds.get(room):
                feed.joined(stored)
        base = feed.base
        if base is not None and room in self._memberships.get(conn.id, ()):
            self._replays.cover(room, conn.id, base + 1)

    async def _add_member(
        self, conn: Connection, room: str, replay: Replay | None, render: Render
    ) -> bool:
        # Subscribes for the room's first local member; False: a no-op join.
        async with self._lock(room):
            members = self._rooms.get(room)
            if members is None:
                try:
                    await self.backend.broker.subscribe(room)
                except BaseException:
                    # Cancelled (a connect timeout, a shutdown) or failed midway: a
                    # subscription the broker made must not outlive this join.
                    await self.backend.broker.unsubscribe(room)
                    raise
                members = {}
            # The connection may have been unregistered while the lock or the
            # subscription was awaited: it must not become a ghost member.
            memberships = self._memberships.get(conn.id)
            if memberships is None:
                if not members:
                    await self.backend.broker.unsubscribe(room)
                raise ValueError("connection was unregistered while joining")
            if room in memberships:
                return False  # a concurrent join of the same room got here first
            if len(memberships) >= self.limits.max_rooms:
                # Concurrent joins of other rooms took the last places meanwhile.
                if not members:
                    await self.backend.broker.unsubscribe(room)
                raise RoomLimitExceeded(self.limits.max_rooms)
            if not members:
                self._feeds[room] = RoomFeed()
            self._rooms[room] = members
            members[conn.id] = conn
            memberships.add(room)
            if replay is not None:
                self._replays.begin(room, conn.id, replay, render, conn.limits.max_queue_messages)
        return True

    def _replay_of(self, history: int, since: int | None) -> Replay | None:
        if history < 0:
            raise ValueError("history must not be negative")
        if history == 0 and since is None:
            return None
        if self.backend.history is None:
            raise HistoryUnavailable()
        return Replay(limit=history, since=since)

    async def catch_up(self, conn: Connection) -> None:
        """Send ``conn`` the history of every durable room it joined and is waiting for.

        The route calls it right after the accept; :meth:`join_room` calls it for
        a connection that is accepted already. Idempotent.
        """
        history = self.backend.history
        for room in self._replays.rooms_of(conn.id):
            pending = self._replays.take(room, conn.id)
            if pending is None or history is None or pending.taken:
                continue  # none, or another join's catch-up has it in hand
            pending.taken = True
            try:
                batches = await read(history, room, pending.replay)
            except BackendError:
                log.warning("pachinko.history_unreadable")
                self._replays.end(room, conn.id)
                self._resync(conn)
                continue
            if self._replays.take(room, conn.id) is not pending or conn.closed:
                continue  # left, or closed, while the history was read
            since = pending.replay.since
            if since is not None and any(batch.resumed for batch in batches):
                pending.catchup.skip_through(since)  # it saw those before
            try:
                await self._send_batches(conn, pending, batches)
            except ConnectionClosed:
                return  # unregister forgets the rest
            if self._replays.take(room, conn.id) is not pending:
                continue  # left while the history was sent: nothing more of this room
            self._replays.cover(room, conn.id, coverage(pending.replay, batches))
            self._go_live(room, conn, pending)

    def _go_live(self, room: str, conn: Connection, pending: Pending) -> None:
        # What was held follows the history, all of it or none: a catch-up that
        # does not fit is a resume, not a slow consumer.
        released = pending.catchup.finish()
        if pending.catchup.gap:
            # A message after its history never arrived here: it resumes.
            log.warning("pachinko.catch_up_gap")
            self._resync(conn)
            return
        if released:
            if not conn.offer_all([Send.of_utf8(m.data) for m in released]):
                self._resync(conn)
                return
            self.stats.frames_delivered += len(released)
        feed = self._feeds.get(room)
        last = pending.catchup.last
        if feed is not None and last is not None:
            feed.joined(last)
        # Live copies of what the history sent may still be on their way: the
        # catch-up filters them until a live message arrives past ``last``.
        if last is None or (feed is not None and feed.last is not None and feed.last >= last):
            self._replays.end(room, conn.id)

    async def _send_batches(
        self, conn: Connection, pending: Pending, batches: list[HistoryBatch]
    ) -> None:
        for batch in batches:
            batch = stamp_batch(batch, self._stamp, conn.id)
            merged = pending.catchup.history([(m.position.seq, m) for m in batch.messages])
            batch = msgspec.structs.replace(batch, messages=merged)
            await conn.send_encoded(encode_text(pending.render(batch)))

    async def resend_original(self, conn: Connection, room: str, appended: Appended) -> bool:
        """After a duplicate send from ``conn``, send it the original, unless it has it.

        The original was stored at ``appended.position``. A connection whose
        catch-up covered that position (or a later one it resumed from) has it
        already, or will have it live: it is sent nothing, so it sees every message
        once. Otherwise it is sent the stored original, stamped, as it would have
        received it live.

        Returns:
            Whether the original was sent.

        Raises:
            BackendError: The store could not be read.
        """
        history = self.backend.history
        seq = appended.position.seq
        covered = self._replays.covered(room, conn.id)
        if history is None or not appended.duplicate or (covered is not None and seq >= covered):
            return False
        original = await history.get(room, seq)
        if original is None:
            return False  # expired meanwhile
        await conn.send_encoded(self._stamp(original.data, original.position))
        return True

    async def recheck_rooms(
        self, *, attempts: int = 3, backoff_s: float = 0.5, concurrency: int = 8
    ) -> int:
        """Check every local durable room after the link to the broker came back.

        Durable messages stored while this process was cut off were republished
        to no one here. For each room whose store holds a newer message than its
        local members are known to have, they are closed with
        :attr:`CloseCode.RESYNC` and resume from their cursors. Call it when the
        backend's connection is re-established (the gateway does, on NATS
        ``reconnected``, in a task of its own); without it the loss is noticed at
        the room's next message.

        Args:
            attempts: Reads of a room's newest position before giving up on it; a
                room that cannot be read is resumed too (never a silent miss).
            backoff_s: Pause after the first failed read, doubling.
            concurrency: Rooms read at once.

        Returns:
            How many connections were closed.
        """
        history = self.backend.history
        if history is None:
            return 0
        slots = asyncio.Semaphore(max(concurrency, 1))

        async def check(room: str, feed: RoomFeed) -> int:
            async with slots:
                stored = await _newest(history, room, attempts, backoff_s)
            members = self._rooms.get(room)
            if not members or feed is not self._feeds.get(room):
                return 0  # left, or rejoined afresh, meanwhile
            if stored is not _UNREADABLE and not feed.behind(cast("int | None", stored)):
                return 0
            log.warning("pachinko.room_behind_store", members=len(members))
            closed = 0
            for conn in list(members.values()):
                if not conn.closed:
                    closed += 1
                self._resync(conn)
            return closed

        counts = await asyncio.gather(*(check(r, f) for r, f in list(self._feeds.items())))
        return sum(counts)

    def _resync(self, conn: Connection) -> None:
        if not conn.closed:
            self.stats.resyncs += 1
            conn.abort(CloseCode.RESYNC, "missed messages: resume")

    async def leave_room(self, conn: Connection, room: str) -> None:
        """Remove ``conn`` from ``room``. Leaving a room one is not in is a no-op."""
        memberships = self._memberships.get(conn.id)
        if memberships is None or room not in memberships:
            return
        memberships.discard(room)
        self._replays.forget(room, conn.id)
        async with self._lock(room):
            members = self._rooms.get(room, {})
            members.pop(conn.id, None)
            if not members and room in self._rooms:
                del self._rooms[room]
                self._feeds.pop(room, None)
                await self.backend.broker.unsubscribe(room)
        await self.backend.presence.member_left(room, self._member(conn))

    async def broadcast_to_room(
        self,
        room: str,
        message: object,
        *,
        exclude: str | None = None,
        persist: bool = False,
        key: str | None = None,
    ) -> Appended | None:
        """Send ``message`` to every member of ``room`` in every process.

        Args:
            room: The room name.
            message: A JSON-encodable object (dict, list, ``msgspec.Struct``...), or
                ``str``/``bytes`` holding JSON text already encoded. A persisted
                message must be a JSON object (it is stamped with its position).
            exclude: The id of a connection that must not receive it.
            persist: Store it in the room's history first; it is delivered only
                once stored, stamped with its position.
            key: With ``persist``, an idempotency key: the same key in the same
                room within the dedup window stores and delivers nothing more.

        Returns:
            With ``persist``, where it was stored (and whether it was a duplicate);
            ``None`` otherwise.

        Raises:
            BackendError: It could not be sent (or, with ``persist``, stored).
            HistoryUnavailable: ``persist`` on a backend that keeps no history.
        """
        _check_room(room)
        data = encode_text(message)
        if not persist:
            await self.backend.broker.publish(room, data, exclude=exclude)
            return None
        history = self.backend.history
        if history is None:
            raise HistoryUnavailable()
        appended = await history.append(room, data, exclude=exclude, key=key)
        if appended.duplicate:
            self.stats.duplicates += 1
        else:
            self.stats.messages_stored += 1
        return appended

    async def history(self, room: str, *, before: int | None = None, limit: int = 50) -> Page:
        """The stored messages of ``room`` before ``before`` (the newest ``limit``), oldest first.

        Messages are stamped, exactly as clients receive them live;
        ``Page.more`` tells whether older ones exist.

        Raises:
            ValueError: ``limit`` is below 1.
            BackendError: The store could not be read.
            HistoryUnavailable: The backend keeps no history.
        """
        check_room(room)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        history = self.backend.history
        if history is None:
            raise HistoryUnavailable()
        page = await history.latest(room, limit=limit, before=before)
        stamp = self._stamp
        messages = [Stored(m.position, stamp(m.data, m.position), m.exclude) for m in page.messages]
        return Page(messages, more=page.more)

    async def send_to_connection(self, connection_id: str, message: object) -> bool:
        """Send ``message`` to one connection, local or (with a networked backend) remote.

        Returns:
            ``True`` if the message was queued for the connection.
        """
        data = encode_text(message)
        if self.deliver_to_connection(connection_id, data):
            return True
        return await self.backend.broker.send_to_connection(connection_id, data)

    async def get_rooms_by_prefix(self, prefix: str) -> list[str]:
        """List every non-empty room, cluster-wide, whose name starts with ``prefix``."""
        return await self.backend.presence.rooms_by_prefix(prefix)

    async def room_members(self, room: str) -> list[Member]:
        """List every member of ``room``, cluster-wide."""
        return await self.backend.presence.room_members(room)

    async def presence(self, room: str) -> list[str]:
        """Who is present in ``room``, cluster-wide: identities, sorted, each once.

        An identity is the label a resource gives its connection with
        ``set_presence``; connections without one are not listed. A process sees
        its own joins at once (read-your-writes).
        """
        check_room(room)
        return await self.backend.presence.presence(room)

    async def connections_of(self, identity: str) -> int:
        """How many connections labelled ``identity`` are in a room, cluster-wide.

        For a per-user connection cap: ask before joining. Concurrent handshakes
        of one identity can each see the count before the others joined, so a cap
        enforced this way may be exceeded by that many.

        Raises:
            BackendError: The membership directory did not answer.
        """
        return await self.backend.presence.connections_of(identity)

    async def connections(self, room: str | None = None) -> AsyncIterator[Connection]:
        """Iterate over a snapshot of this process's open connections.

        Args:
            room: Only connections that are members of this room, if given.
        """
        source = self._connections if room is None else self._rooms.get(room, {})
        for conn in list(source.values()):
            if not conn.closed:
                yield conn

    def local_rooms(self) -> list[str]:
        """Names of the rooms that have members in this process."""
        return sorted(self._rooms)

    # -- BackendSink ---------------------------------------------------------

    def deliver(
        self,
        room: str,
        data: bytes,
        exclude: str | None,
        position: Position | None = None,
        prev: int | None = None,
    ) -> None:
        members = self._rooms.get(room)
        if not members:
            return
        if position is not None:
            self._deliver_stored(room, members, data, exclude, position, prev)
            return
        frame = _text_frame(data)
        if frame is not None:
            self._fan_out(members, frame, exclude)

    def _deliver_stored(
        self,
        room: str,
        members: dict[str, Connection],
        data: bytes,
        exclude: str | None,
        position: Position,
        prev: int | None,
    ) -> None:
        if not self._follows(room, members, position, prev):
            return
        self.stats.delivery_latency.observe(time.time() - position.ts / 1000)
        try:
            stamped = self._stamp(data, position)
        except Exception:
            log.exception("pachinko.stamp_failed")
            return
        frame = _text_frame(stamped)
        if frame is None:
            return
        holding = self._replays.holding(room)
        if holding is None:
            self._fan_out(members, frame, exclude)
            return
        stored = Stored(position, stamped, exclude)
        for conn_id, conn in members.items():
            if conn_id == exclude:
                continue
            pending = holding.get(conn_id)
            if pending is None:
                self._offer(conn, frame)
            else:
                self._hold(room, conn, pending, stored, prev)

    def _fan_out(self, members: dict[str, Connection], frame: Send, exclude: str | None) -> None:
        # The hot loop: one frame object to every member. Offering never awaits
        # nor changes membership, so the dict needs no copy.
        delivered = 0
        for conn_id, conn in members.items():
            if conn_id != exclude and conn.offer(frame):
                delivered += 1
        self.stats.frames_delivered += delivered

    def _follows(
        self, room: str, members: dict[str, Connection], position: Position, prev: int | None
    ) -> bool:
        feed = self._feeds.get(room)
        verdict = feed.live(position.seq, prev) if feed is not None else Feed.DELIVER
        if verdict is Feed.GAP:
            # Messages stored before this one never arrived here: nobody in the
            # room may go on as if it had seen them. They resume from their cursors.
            log.warning("pachinko.room_feed_gap", last=position.seq)
            for conn in list(members.values()):
                self._resync(conn)
        return verdict is Feed.DELIVER

    def _hold(
        self, room: str, conn: Connection, pending: Pending, stored: Stored, prev: int | None
    ) -> None:
        released = hold(pending, stored, prev)
        if released is None:
            self._resync(conn)  # too much arrived while its history was read
            return
        for message in released:
            self._offer(conn, Send.of_utf8(message.data))
        if pending.caught_up(stored.position.seq):
            self._replays.end(room, conn.id)

    def deliver_to_connection(self, connection_id: str, data: bytes) -> bool:
        conn = self._connections.get(connection_id)
        if conn is None:
            return False
        frame = _text_frame(data)
        return frame is not None and self._offer(conn, frame)

    async def presence_changed(self, change: PresenceChange) -> None:
        handler = self.on_presence
        if handler is None:
            return
        try:
            await handler(change)
        except Exception:
            # A failing hook must not undo the join or leave that caused it.
            log.exception("pachinko.presence_handler_failed", present=change.present)

    @property
    def connection_count(self) -> int:
        """Connections currently registered in this process."""
        return len(self._connections)

    def _offer(self, conn: Connection, frame: Send) -> bool:
        if conn.offer(frame):
            self.stats.frames_delivered += 1
            return True
        return False

    # -- kicks ---------------------------------------------------------------

    async def kick(self, identity: str, room: str | None = None, *, reason: str = "kicked") -> int:
        """Close every connection of ``identity``, in every process, with 4501.

        The identity is the label a resource gives its connection with
        ``set_presence`` (the chat's user name). Connections in this process are
        closed before this returns; the backend tells the others (with NATS, one
        publish on ``<prefix>._dir.kick`` that every node subscribes to), and each
        closes its own matching connections as soon as the kick arrives.
        :data:`CloseCode.KICKED` is terminal: clients do not reconnect as they are.

        Args:
            identity: Whose connections to close.
            room: Only the connections that are members of this room, if given.
            reason: The close reason sent to the clients (at most 123 UTF-8 bytes).

        Returns:
            How many connections of this process were closed.

        Raises:
            ValueError: ``identity`` is empty, or ``reason`` is too long.
            BackendError: The other processes could not be told.
        """
        check_kick(identity, room, reason)
        closed = self.kick_local(identity, room, reason)
        await self.backend.broker.kick(identity, room, reason)
        log.info("pachinko.kicked", closed=closed, room_only=room is not None)
        return closed

    def kick_local(self, identity: str, room: str | None, reason: str) -> int:
        """Close this process's connections of ``identity`` (in ``room``, if given)."""
        source = self._connections if room is None else self._rooms.get(room, {})
        targets = [
            conn
            for conn_id, conn in source.items()
            if self._presence.get(conn_id) == identity and not conn.closed
        ]
        for conn in targets:
            conn.abort(CloseCode.KICKED, reason)
        return len(targets)

    # -- internals -----------------------------------------------------------

    def _check_room_limit(self, memberships: set[str]) -> None:
        if len(memberships) >= self.limits.max_rooms:
            raise RoomLimitExceeded(self.limits.max_rooms)

    def _member(self, conn: Connection) -> Member:
        return Member(connection_id=conn.id, presence=self._presence.get(conn.id))

    @contextlib.asynccontextmanager
    async def _lock(self, room: str) -> AsyncIterator[None]:
        entry = self._room_locks.get(room)
        if entry is None:
            entry = self._room_locks[room] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._room_locks[room]


#: The newest position of a room that could not be read.
_UNREADABLE: Final = object()


async def _newest(
    history: History, room: str, attempts: int, backoff_s: float
) -> int | None | object:
    # The room's newest stored position, retried with a doubling pause.
    for attempt in range(max(attempts, 1)):
        if attempt:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            return await history.last_seq(room)
        except BackendError:
            log.warning("pachinko.recheck_unreadable", attempt=attempt + 1)
    return _UNREADABLE


def _text_frame(data: bytes) -> Send | None:
    # Checked once per message, never per recipient. Bytes that are not UTF-8 did
    # not come from a library producer; they are dropped, not sent as text.
    frame = Send.of_checked_utf8(data)
    if frame is None:
        log.warning("pachinko.undecodable_room_message", size=len(data))
    return frame


def _check_room(room: str) -> None:
    check_room(room)


#: A close frame's reason is at most 123 bytes (RFC 6455 section 5.5).
MAX_CLOSE_REASON_BYTES: Final = 123


def check_kick(identity: str, room: str | None, reason: str) -> None:
    """Check the arguments of a kick.

    Raises:
        ValueError: ``identity`` is empty, ``room`` is not a room name, or
            ``reason`` is longer than a close frame carries.
    """
    if not isinstance(identity, str) or not identity:
        raise ValueError("a kick names a non-empty identity")
    if room is not None:
        check_room(room)
    if len(reason.encode()) > MAX_CLOSE_REASON_BYTES:
        raise ValueError(f"a close reason has at most {MAX_CLOSE_REASON_BYTES} UTF-8 bytes")
