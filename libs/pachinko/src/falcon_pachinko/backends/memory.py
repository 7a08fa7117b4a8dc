"""The in-process backend: one process, no infrastructure."""

from __future__ import annotations

from ..errors import BackendError
from .base import Backend, BackendSink, Member

__all__ = ["InProcessBackend"]


class InProcessBackend(Backend):
    """Delivers room traffic within the process that published it.

    Publishing calls the sink synchronously, so every member receives messages in
    exactly the order they were published. Membership is the local membership.
    """

    def __init__(self) -> None:
        self._sink: BackendSink | None = None
        self._members: dict[str, dict[str, Member]] = {}

    async def start(self, sink: BackendSink) -> None:
        if self._sink is not None and self._sink is not sink:
            raise BackendError("an InProcessBackend serves exactly one connection manager")
        self._sink = sink

    async def stop(self) -> None:
        self._members.clear()

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

    async def member_left(self, room: str, member: Member) -> None:
        members = self._members.get(room)
        if members is not None:
            members.pop(member.connection_id, None)
            if not members:
                del self._members[room]

    async def rooms_by_prefix(self, prefix: str) -> list[str]:
        return sorted(r for r, m in self._members.items() if m and r.startswith(prefix))

    async def room_members(self, room: str) -> list[Member]:
        return list(self._members.get(room, {}).values())
