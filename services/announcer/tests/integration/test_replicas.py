"""Two announcer replicas against a real nats-server and an in-process room directory.

Members are registered through a presence-reporting NATS backend; a raw NATS
subscription observes what is published on ``chat.<room>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from chat_announcements.worker import announcement_worker
from chat_announcer.lease import KvPeriodLease
from chat_announcer.metrics import Metrics
from falcon_pachinko import Member, WebSocketConnectionManager, WorkerController
from falcon_pachinko.backends.nats import NatsBackend
from falcon_pachinko.directory import Directory
from falcon_pachinko.subjects import Subjects
from falcon_pachinko.testing import scaled
from falcon_pachinko.testing.nats import nats_server

pytestmark = pytest.mark.integration

INTERVAL_S = 1.0
PERIODS = 3
TEXT = "Maintenance at 2 AM UTC."
ROOMS = ("team-a", "team-b", "lobby")


@contextlib.asynccontextmanager
async def connection(url: str) -> AsyncIterator[Client]:
    nc = await nats.connect(url, connect_timeout=2)
    try:
        yield nc
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def started(manager: WebSocketConnectionManager) -> AsyncIterator[WebSocketConnectionManager]:
    await manager.start()
    try:
        yield manager
    finally:
        await manager.stop()


@contextlib.asynccontextmanager
async def directory(nc: Client) -> AsyncIterator[Directory]:
    service = Directory(nc, Subjects("chat"), ttl_s=5)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


class Observer:
    """Records (arrival time, room, decoded message) of everything on ``chat.<room>``."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, object]] = []
        self.changed = asyncio.Event()

    async def subscribe(self, nc: Client, rooms: tuple[str, ...]) -> None:
        for room in rooms:

            async def record(msg: Msg, room: str = room) -> None:
                self.seen.append((time.monotonic(), room, msgspec.json.decode(msg.data)))
                self.changed.set()

            await nc.subscribe(f"chat.{room}", cb=record)
        await nc.flush()

    def times(self, room: str) -> list[float]:
        return [t for t, r, _ in self.seen if r == room]

    async def wait_for(self, room: str, count: int) -> None:
        while len(self.times(room)) < count:
            self.changed.clear()
            await self.changed.wait()


async def until_listed(manager: WebSocketConnectionManager, rooms: set[str]) -> None:
    """Wait (bounded by the caller) until the directory lists ``rooms``."""
    while set(await manager.get_rooms_by_prefix("")) != rooms:
        await asyncio.sleep(0.02)


async def test_two_replicas_announce_exactly_once_per_room_per_period() -> None:
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(nats_server())
        await stack.enter_async_context(
            directory(await stack.enter_async_context(connection(server.url)))
        )
        members = await stack.enter_async_context(
            started(
                WebSocketConnectionManager(
                    NatsBackend(servers=server.url, heartbeat_interval_s=0.5)
                )
            )
        )
        for room in ROOMS:
            await members.backend.broker.subscribe(room)
            await members.backend.presence.member_joined(
                room, Member(connection_id=f"c-{room}", presence="ann")
            )

        replicas: list[tuple[WebSocketConnectionManager, KvPeriodLease, CollectorRegistry]] = []
        for name in ("a", "b"):
            nc = await stack.enter_async_context(connection(server.url))
            manager = await stack.enter_async_context(
                started(WebSocketConnectionManager(NatsBackend(client=nc, presence=False)))
            )
            lease = KvPeriodLease(nc, bucket="chat_announcer", interval_s=INTERVAL_S, owner=name)
            await lease.prepare()
            replicas.append((manager, lease, CollectorRegistry()))
        async with asyncio.timeout(scaled(3)):
            await until_listed(replicas[0][0], set(ROOMS))

        observer = Observer()
        watcher = await stack.enter_async_context(connection(server.url))
        await observer.subscribe(watcher, ROOMS)

        controllers = [WorkerController(), WorkerController()]
        started_at = time.time()
        for controller, (manager, lease, registry) in zip(controllers, replicas, strict=True):
            await controller.start(
                announcement_worker,
                conn_mgr=manager,
                interval_s=INTERVAL_S,
                text=TEXT,
                room_prefix="team-",
                lease=lease,
                metrics=Metrics(registry),
            )
        registries = [registry for *_, registry in replicas]
        try:
            async with asyncio.timeout(scaled(PERIODS * INTERVAL_S + 2)):
                await observer.wait_for("team-a", PERIODS)
                await observer.wait_for("team-b", PERIODS)
                # The losing replica's answer may come a moment after the winner's.
                while lost(registries) < claimed(registries):
                    await asyncio.sleep(0.01)
        finally:
            for controller in controllers:
                await controller.stop()
            stopped_at = time.time()
        # Everything the replicas published has reached the server; a round trip
        # from the watcher then delivers whatever is still on its way to it.
        for manager, _, _ in replicas:
            await manager.backend.client.flush()
        await watcher.flush()

    boundaries = math.floor(stopped_at / INTERVAL_S) - math.floor(started_at / INTERVAL_S)
    expected = {"type": "serverSystemAnnouncement", "payload": {"text": TEXT}}
    for room in ("team-a", "team-b"):
        times = observer.times(room)
        assert abs(len(times) - boundaries) <= 1, (room, len(times), boundaries)
        assert len(times) >= PERIODS
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        assert all(gap > 0.5 * INTERVAL_S for gap in gaps), (room, gaps)
    assert all(message == expected for _, _, message in observer.seen)
    assert observer.times("lobby") == []  # does not match the prefix

    # Each announced period was claimed by one replica and lost by the other.
    assert claimed(registries) == len(observer.times("team-a"))
    assert lost(registries) == claimed(registries)


def claimed(registries: list[CollectorRegistry]) -> float:
    return sum(r.get_sample_value("chat_announcer_periods_claimed_total") or 0 for r in registries)


def lost(registries: list[CollectorRegistry]) -> float:
    labels = {"reason": "claimed_elsewhere"}
    return sum(
        r.get_sample_value("chat_announcer_periods_skipped_total", labels) or 0 for r in registries
    )
