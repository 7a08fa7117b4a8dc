"""The in-process backend: one process, no infrastructure."""

from __future__ import annotations

from ..errors import BackendError
from ..presence import PresenceTracker
from .base import Backend, Broker, BrokerSink, Member, Presence, PresenceSink

__all__ = ["InProcessBackend", "InProcessBroker", "InProcessPresence"]


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
        self._tracker = PresenceTracker()
        self._shutting_down = False

    async def start(self, sink: PresenceSink) -> None:
        self._sink = sink
        self._shutting_down = False

    async def stop(self) -> None:
        self._members.clear()
        self._tracker = PresenceTracker()

    def begin_shutdown(self) -> None:
        self._shutting_down = True

    async def member_joined(self, room: str, member: Member) -> None:
        self._members.setdefault(room, {})[member.connection_id] = member
        change = self._tracker.add(room, member.presence, member.connection_id)
        if change is not None and self._sink is not None:
            await self._sink.presence_changed(change)

    async def member_left(self, room: str, member: Member) -> None:
        members = self._members.get(room)
        joined = members.pop(member.connection_id, None) if members is not None else None
        if members is not None and not members:
            del self._members[room]
        # The label it joined with: it may have been relabelled since.
        label = joined.presence if joined is not None else member.presence
        change = self._tracker.remove(room, label, member.connection_id)
        if change is not None and self._sink is not None and not self._shutting_down:
            await self._sink.presence_changed(change)

    async def rooms_by_prefix(self, prefix: str) -> list[str]:
        return sorted(r for r, m in self._members.items() if m and r.startswith(prefix))

    async def room_members(self, room: str) -> list[Member]:
        return list(self._members.get(room, {}).values())

    async def presence(self, room: str) -> list[str]:
        return self._tracker.identities(room)

    async def connections_of(self, identity: str) -> int:
        return len(
            {
                m.connection_id
                for ms in self._members.values()
                for m in ms.values()
                if m.presence == identity
            }
        )


class InProcessBackend(Backend):
    """Room traffic and presence within one process: no infrastructure needed."""

    def __init__(self) -> None:
        super().__init__(InProcessBroker(), InProcessPresence())
