"""The in-process backend: one process, no infrastructure.

Its history is bounded memory: per room the last ``max_messages_per_room``
messages, none older than ``max_age_s``, at most ``max_bytes`` in all; it is lost
when the process ends.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable

from ..errors import BackendError
from ..history import Appended, Page, Position, Stored
from ..presence import PresenceTracker
from .base import Backend, Broker, BrokerSink, History, Member, Presence, PresenceSink

__all__ = ["InProcessBackend", "InProcessBroker", "InProcessHistory", "InProcessPresence"]


class InProcessBroker(Broker):
    """Delivers room traffic within the process that published it.

    Publishing calls the sink synchronously, so every member receives messages in
    exactly the order they were published.
    """

    def __init__(self) -> None:
        self._sink: BrokerSink | None = None
        self._rooms: set[str] = set()

    async def start(self, sink: BrokerSink) -> None:
        if self._sink is not None and self._sink is not sink:
            raise BackendError("an in-process broker serves exactly one connection manager")
        self._sink = sink

    async def stop(self) -> None:
        self._rooms.clear()

    async def subscribe(self, room: str) -> None:
        self._rooms.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)

    async def publish(self, room: str, data: bytes, *, exclude: str | None = None) -> None:
        if self._sink is not None and room in self._rooms:
            self._sink.deliver(room, data, exclude)

    def publish_stored(self, room: str, stored: Stored, prev: int) -> None:
        """Deliver a message the in-process history has just stored."""
        if self._sink is not None and room in self._rooms:
            self._sink.deliver(room, stored.data, stored.exclude, stored.position, prev)

    async def send_to_connection(self, connection_id: str, data: bytes) -> bool:
        # Every connection is local, so the manager has already tried it.
        return False


class InProcessPresence(Presence):
    """Membership and presence of one process, decided here.

    First-in/last-out changes go to the sink's ``presence_changed`` as they
    happen. At shutdown nobody is left to tell, so departures after
    :meth:`begin_shutdown` are not reported.
    """

    def __init__(self) -> None:
        self._sink: PresenceSink | None = None
        self._members: dict[str, dict[str, Member]] = {}
        # identity -> connection id -> rooms it is in under that label: a user's
        # connection count without a scan of every room (asked on every join).
        self._by_identity: dict[str, dict[str, int]] = {}
        self._tracker = PresenceTracker()
        self._shutting_down = False

    async def start(self, sink: PresenceSink) -> None:
        self._sink = sink
        self._shutting_down = False

    async def stop(self) -> None:
        self._members.clear()
        self._by_identity.clear()
        self._tracker = PresenceTracker()

    def begin_shutdown(self) -> None:
        self._shutting_down = True

    async def member_joined(self, room: str, member: Member) -> None:
        members = self._members.setdefault(room, {})
        self._uncount(members.get(member.connection_id))
        members[member.connection_id] = member
        if member.presence is not None:
            held = self._by_identity.setdefault(member.presence, {})
            held[member.connection_id] = held.get(member.connection_id, 0) + 1
        change = self._tracker.add(room, member.presence, member.connection_id)
        if change is not None and self._sink is not None:
            await self._sink.presence_changed(change)

    async def member_left(self, room: str, member: Member) -> None:
        members = self._members.get(room)
        joined = members.pop(member.connection_id, None) if members is not None else None
        if members is not None and not members:
            del self._members[room]
        self._uncount(joined)
        # The label it joined with: it may have been relabelled since.
        label = joined.presence if joined is not None else member.presence
        change = self._tracker.remove(room, label, member.connection_id)
        if change is not None and self._sink is not None and not self._shutting_down:
            await self._sink.presence_changed(change)

    def _uncount(self, member: Member | None) -> None:
        if member is None or member.presence is None:
            return
        held = self._by_identity.get(member.presence)
        if held is None or member.connection_id not in held:
            return
        held[member.connection_id] -= 1
        if held[member.connection_id] == 0:
            del held[member.connection_id]
            if not held:
                del self._by_identity[member.presence]

    async def rooms_by_prefix(self, prefix: str) -> list[str]:
        return sorted(r for r, m in self._members.items() if m and r.startswith(prefix))

    async def room_members(self, room: str) -> list[Member]:
        return list(self._members.get(room, {}).values())

    async def presence(self, room: str) -> list[str]:
        return self._tracker.identities(room)

    async def connections_of(self, identity: str) -> int:
        return len(self._by_identity.get(identity, ()))


class InProcessHistory(History):
    """Durable rooms in bounded memory, for one process.

    Positions come from one counter for every room, as JetStream's stream
    sequence does. Retention drops the oldest messages first: per room beyond
    ``max_messages_per_room``; in every room those older than ``max_age_s``
    (swept on each append, whichever room it is for, and when a room is read);
    and, whatever their room, the oldest beyond ``max_bytes`` of message data in
    all. A room whose last message went is forgotten.

    Args:
        broker: The broker whose subscribers receive stored messages live.
        max_messages_per_room: Messages kept per room.
        max_age_s: Seconds a message is kept.
        dedup_window_s: Seconds an idempotency key is remembered.
        max_bytes: Bytes of message data kept in all rooms together.
        clock: Unix seconds (injected for tests).
    """

    def __init__(
        self,
        broker: InProcessBroker,
        *,
        max_messages_per_room: int = 1000,
        max_age_s: float = 7 * 86400,
        dedup_window_s: float = 120.0,
        max_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_messages_per_room < 1 or max_age_s <= 0 or dedup_window_s < 0 or max_bytes < 1:
            raise ValueError("history bounds must be positive")
        self._broker = broker
        self._max_messages = max_messages_per_room
        self._max_age_ms = int(max_age_s * 1000)
        self._dedup_window_s = dedup_window_s
        self._max_bytes = max_bytes
        self._clock = clock
        self._seq = 0
        self._rooms: dict[str, deque[Stored]] = {}
        #: Every stored message's (seq, room), oldest first; entries of messages a
        #: room dropped already are skipped when reached (and compacted away).
        self._order: deque[tuple[int, str]] = deque()
        self._count = 0
        self._bytes = 0
        # (room, key) -> (position, expiry); insertion order is expiry order.
        self._keys: OrderedDict[tuple[str, str], tuple[Position, float]] = OrderedDict()

    @property
    def stored_bytes(self) -> int:
        """Bytes of message data held now, in all rooms."""
        return self._bytes

    async def append(
        self, room: str, data: bytes, *, exclude: str | None = None, key: str | None = None
    ) -> Appended:
        now = self._clock()
        self._forget_keys(now)
        if key is not None and (room, key) in self._keys:
            return Appended(self._keys[(room, key)][0], duplicate=True)
        self._sweep(now)
        messages = self._rooms.get(room)
        prev = messages[-1].position.seq if messages else 0
        if messages is None:
            messages = self._rooms[room] = deque()
        self._seq += 1
        position = Position(seq=self._seq, id=uuid.uuid4().hex, ts=int(now * 1000))
        stored = Stored(position, data, exclude)
        messages.append(stored)
        self._order.append((self._seq, room))
        self._count += 1
        self._bytes += len(data)
        if len(messages) > self._max_messages:
            self._drop_first(room, messages)
        while self._bytes > self._max_bytes and self._order:
            self._drop_oldest()
        if key is not None:
            self._keys[(room, key)] = (position, now + self._dedup_window_s)
        self._broker.publish_stored(room, stored, prev)
        return Appended(position)

    async def latest(self, room: str, *, limit: int, before: int | None = None) -> Page:
        messages = list(self._room(room, self._clock()))
        if before is not None:
            messages = [m for m in messages if m.position.seq < before]
        kept = messages[-limit:] if limit > 0 else []
        return Page(kept, more=len(messages) > len(kept))

    async def after(self, room: str, after: int, *, limit: int) -> Page:
        newer = [m for m in self._room(room, self._clock()) if m.position.seq > after]
        return Page(newer[: max(limit, 0)], more=len(newer) > limit)

    async def has(self, room: str, seq: int) -> bool:
        return any(m.position.seq == seq for m in self._room(room, self._clock()))

    def _room(self, room: str, now: float) -> deque[Stored]:
        messages = self._rooms.get(room)
        if messages is None:
            return deque()  # reading a room creates nothing
        oldest = int(now * 1000) - self._max_age_ms
        while messages and messages[0].position.ts < oldest:
            self._drop_first(room, messages)
        return messages

    def _sweep(self, now: float) -> None:
        # The oldest messages of every room first: an idle room ages out too.
        oldest = int(now * 1000) - self._max_age_ms
        while self._order:
            seq, room = self._order[0]
            messages = self._rooms.get(room)
            if messages and messages[0].position.seq == seq:
                if messages[0].position.ts >= oldest:
                    return
                self._order.popleft()
                self._drop_first(room, messages)
            else:
                self._order.popleft()  # dropped already by its room

    def _drop_oldest(self) -> None:
        seq, room = self._order.popleft()
        messages = self._rooms.get(room)
        if messages and messages[0].position.seq == seq:
            self._drop_first(room, messages)

    def _drop_first(self, room: str, messages: deque[Stored]) -> None:
        dropped = messages.popleft()
        self._count -= 1
        self._bytes -= len(dropped.data)
        if not messages:
            del self._rooms[room]
        if len(self._order) > 2 * self._count + 1024:
            self._compact()

    def _compact(self) -> None:
        live = sorted((m.position.seq, room) for room, ms in self._rooms.items() for m in ms)
        self._order = deque(live)

    def _forget_keys(self, now: float) -> None:
        while self._keys:
            key, (_position, expiry) = next(iter(self._keys.items()))
            if expiry > now:
                return
            del self._keys[key]


class InProcessBackend(Backend):
    """Room traffic, presence and history within one process: no infrastructure needed.

    Args:
        max_messages_per_room: History kept per room (see :class:`InProcessHistory`).
        max_age_s: Seconds history is kept.
        dedup_window_s: Seconds an idempotency key is remembered.
        max_bytes: Bytes of history kept in all rooms together.
    """

    def __init__(
        self,
        *,
        max_messages_per_room: int = 1000,
        max_age_s: float = 7 * 86400,
        dedup_window_s: float = 120.0,
        max_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        broker = InProcessBroker()
        history = InProcessHistory(
            broker,
            max_messages_per_room=max_messages_per_room,
            max_age_s=max_age_s,
            dedup_window_s=dedup_window_s,
            max_bytes=max_bytes,
        )
        super().__init__(broker, InProcessPresence(), history)
