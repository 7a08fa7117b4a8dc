"""Two rooms-service replicas, one active: a takeover that announces every departure once.

Real processes: nats-server with JetStream, two ``chat-rooms`` replicas sharing
the KV lease, two gateways, WebSocket clients. The active replica is SIGKILLed
while a gateway dies and users leave; the standby takes over within the lease's
bound and the room hears each departure exactly once: those the old replica
announced are not repeated, those it never got to are announced by the new one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import AsyncExitStack

from falcon_pachinko.testing import WSClient, connect, scaled

from .cluster import Cluster, Service
from .test_distributed import eventually, joined
from .test_presence import metric, presence_news, settle

TTL_S = 1.5
#: CHAT_ROOMS_LEASE_TTL_S + a read interval (TTL / 6) + a write: the takeover bound.
TAKEOVER_BOUND_S = TTL_S + TTL_S / 6 + 1.0


async def replicas(chat: Cluster) -> tuple[Service, Service]:
    one = await chat.rooms(CHAT_ROOMS_LEASE_TTL_S=str(TTL_S))
    two = await chat.rooms(CHAT_ROOMS_LEASE_TTL_S=str(TTL_S))
    await eventually(
        lambda: _async_true(_sum_active(one, two) == 1),
        "exactly one active rooms replica",
        timeout_s=10,
    )
    return one, two


async def _async_true(value: bool) -> bool:
    return value


def _sum_active(*services: Service) -> float:
    return sum(metric(s, "chat_rooms_active") for s in services)


def active_of(one: Service, two: Service) -> tuple[Service, Service]:
    return (one, two) if metric(one, "chat_rooms_active") == 1 else (two, one)


def departures(client: WSClient) -> Counter[str]:
    return Counter(user for kind, user in presence_news(client) if kind == "serverUserLeft")


async def wait_left(watcher: WSClient, users: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + scaled(timeout_s)
    while not users <= set(departures(watcher)):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"not announced as left within {timeout_s}s: {users - set(departures(watcher))}"
            )
        try:
            await watcher.expect("serverUserLeft", timeout_s=remaining)
        except TimeoutError:
            continue


async def users_on(
    stack: AsyncExitStack, chat: Cluster, gw: Service, *names: str
) -> list[WSClient]:
    clients = []
    for name in names:
        client = await stack.enter_async_context(connect(chat.ws_url(gw, "general", user=name)))
        await joined(client)
        clients.append(client)
    return clients


async def test_sigkill_of_the_active_replica_loses_and_repeats_no_departure(chat: Cluster) -> None:
    one, two = await replicas(chat)
    survivor, doomed = await chat.gateway(), await chat.gateway()
    async with AsyncExitStack() as stack:
        (watcher,) = await users_on(stack, chat, survivor, "Watcher")
        ann, ben, gus, fay_a = await users_on(stack, chat, survivor, "Ann", "Ben", "Gus", "Fay")
        dee, eve, fay_b = await users_on(stack, chat, doomed, "Dee", "Eve", "Fay")
        await settle(watcher)
        arrived = Counter(u for kind, u in presence_news(watcher) if kind == "serverUserJoined")
        assert arrived == Counter({"Ann": 1, "Ben": 1, "Gus": 1, "Fay": 1, "Dee": 1, "Eve": 1})

        # Gus leaves while the active replica lives: announced by it.
        await gus.close()
        await wait_left(watcher, {"Gus"}, timeout_s=5)
        active, standby = active_of(one, two)
        await eventually(
            lambda: _async_true(metric(standby, "chat_rooms_handover_owed") == 0),
            "the standby matched Gus's departure",
        )

        # The active replica dies; at once a gateway dies too and Ann leaves.
        killed = time.monotonic()
        await asyncio.gather(active.kill(), doomed.kill())
        await ann.close()

        # Dee and Eve (their gateway's TTL) and Ann (a clean leave) are announced by
        # the new active replica. Fay still has a tab on the survivor: she stays.
        await eventually(
            lambda: _async_true(metric(standby, "chat_rooms_active") == 1),
            "the standby took over",
            timeout_s=TAKEOVER_BOUND_S + 2,
        )
        took = time.monotonic() - killed
        assert took < scaled(TAKEOVER_BOUND_S) + 0.5, f"takeover after {took:.2f}s"
        await wait_left(watcher, {"Ann", "Dee", "Eve"}, timeout_s=10)
        await settle(ben, watcher)
        assert departures(watcher) == Counter({"Gus": 1, "Ann": 1, "Dee": 1, "Eve": 1}), (
            "each departure exactly once across the takeover"
        )
        assert metric(standby, "chat_rooms_takeovers_total") == 1

        # The new active replica goes on as usual.
        await fay_a.close()
        await wait_left(watcher, {"Fay"}, timeout_s=5)
        await settle(watcher)
        assert departures(watcher)["Fay"] == 1
        del eve, dee, fay_b  # their gateway is gone


async def test_a_rolling_restart_of_the_rooms_service_hands_over_at_once(chat: Cluster) -> None:
    one, two = await replicas(chat)
    gateway = await chat.gateway()
    async with AsyncExitStack() as stack:
        watcher, ann = await users_on(stack, chat, gateway, "Watcher", "Ann")
        active, standby = active_of(one, two)
        stopped = time.monotonic()
        assert await active.stop() == 0  # SIGTERM: announces what it holds, releases the lease
        await eventually(
            lambda: _async_true(metric(standby, "chat_rooms_active") == 1),
            "the standby took over",
            timeout_s=TTL_S,
        )
        assert time.monotonic() - stopped < scaled(TTL_S), "a released lease is taken at once"
        replacement = await chat.rooms(CHAT_ROOMS_LEASE_TTL_S=str(TTL_S))
        await ann.close()
        await wait_left(watcher, {"Ann"}, timeout_s=5)
        await settle(watcher)
        assert departures(watcher) == Counter({"Ann": 1})
        assert metric(replacement, "chat_rooms_active") == 0
        assert metric(standby, "chat_rooms_handed_over_total") == 0
