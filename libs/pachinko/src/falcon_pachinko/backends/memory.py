"""The in-process backend: one process, no infrastructure."""

from __future__ import annotations

from ..errors import BackendError
from ..presence import PresenceTracker
from .base import Backend, BackendSink, Member

__all__ = ["InProcessBackend"]


class InProcessBackend(Backend):
    """Delivers room traffic within the process that published it.

    Publishing calls the sink synchronously, so every member receives messages in
    exactly the order they were published. Membership is the local membership, and
    presence is decided here: first-in/last-out changes go to the sink's
    ``presence_changed`` as they happen. At shutdown nobody is left to tell, so
    departures after :meth:`begin_shutdown` are not reported.
    """

    def __init__(self) -> None:
        self._sink: BackendSink | None = None
        self._members: dict[str, dict[str, Member]] = {}
        self._presence = PresenceTracker()
        self._shutting_down = False

    async def start(self, sink: BackendSink) -> None:
        if self._sink is not None and self._sink is not sink:
            raise BackendError("an InProcessBackend serves exactly one connection manager")
        self._sink = sink

    async def stop(self) -> None:
        self._members.clear()
        self._presence = PresenceTracker()
        self._shutting_down = False

    def begin_shutdown(self) -> None:
        self._shutting_down = True

    async def subscribe(self, room: str) -> None:
        self._members.setdefault(room, {})

    async def unsubscribe(self, room: str) -> None:
        if not self._members.get(room):
            self._members.pop(room, None)

    async def publish(self, room: str, data: bytes, *, exclude: str | None = None) -> None:
        if self._sink is not None and room in self._members:
            self._sink.deliver(room, data, exclude)

    async def send_to_connection(self, connection_id: str, data: bytes) -> bool:
        # Every connection is local, so the manager has already tried it.
        return False

    async def member_joined(self, room: str, member: Member) -> None:
        self._members.setdefault(room, {})[member.connection_id] = member
        change = self._presence.add(room, member.presence, member.connection_id)
        if change is not None and self._sink is not None:
            await self._sink.presence_changed(change)

    async def member_left(self, room: str, member: Member) -> None:
        members = self._members.get(room)
        if members is not None:
            members.pop(member.connection_id, None)
            if not members:
                del self._members[room]
        change = self._presence.remove(room, member.presence, member.connection_id)
        if change is not None and self._sink is not None and not self._shutting_down:
            await self._sink.presence_changed(change)

    async def rooms_by_prefix(self, prefix: str) -> list[str]:
        return sorted(r for r, m in self._members.items() if m and r.startswith(prefix))

    async def room_members(self, room: str) -> list[Member]:
        return list(self._members.get(room, {}).values())

    async def presence(self, room: str) -> list[str]:
        return self._presence.identities(room)
