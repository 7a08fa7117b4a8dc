"""The announcement worker: the seed's hourly ``system_announcement_worker``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from chat_protocol.messages import ServerSystemAnnouncement, TextPayload

__all__ = ["RoomDirectory", "announce_once", "announcement_worker"]

log = structlog.get_logger(__name__)


class RoomDirectory(Protocol):
    """What the worker needs of a connection manager."""

    async def get_rooms_by_prefix(self, prefix: str) -> list[str]: ...

    async def broadcast_to_room(self, room: str, message: object) -> None: ...


async def announce_once(conn_mgr: RoomDirectory, text: str, room_prefix: str) -> int:
    """Send ``text`` to every room whose name starts with ``room_prefix``.

    The message is built once; the manager encodes it once per room.

    Returns:
        How many rooms were sent the announcement.
    """
    message = ServerSystemAnnouncement(payload=TextPayload(text=text))
    rooms = await conn_mgr.get_rooms_by_prefix(room_prefix)
    for room in rooms:
        await conn_mgr.broadcast_to_room(room, message)
    log.info("announcer.announced", rooms=len(rooms))
    return len(rooms)


async def announcement_worker(
    conn_mgr: RoomDirectory,
    *,
    interval_s: float,
    text: str,
    room_prefix: str = "",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Announce every ``interval_s`` seconds, on a fixed schedule that does not drift.

    The first announcement comes one interval after start, as in the seed. A
    period that fails (the backend is unreachable, say) is logged and skipped.
    """
    next_at = clock() + interval_s
    while True:
        await sleep(max(0.0, next_at - clock()))
        try:
            await announce_once(conn_mgr, text, room_prefix)
        except Exception:
            log.exception("announcer.failed")
        next_at += interval_s
        # After a long stall, skip missed periods instead of announcing in a burst.
        if next_at < clock():
            next_at = clock() + interval_s
