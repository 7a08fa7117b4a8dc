"""Announcer replicas and JWT authentication, as real processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from chat_gateway.auth import issue_token
from falcon_pachinko.testing import WSClient, connect, handshake_status

from .cluster import Cluster

SECRET = "system-test-secret-that-is-long-enough-for-hs256"


async def announcement_times(client: WSClient, count: int) -> list[float]:
    times = []
    for _ in range(count):
        await client.expect("serverSystemAnnouncement", timeout_s=5)
        times.append(time.monotonic())
    return times


async def test_two_announcer_replicas_announce_once_per_room_per_period(chat: Cluster) -> None:
    await chat.rooms()
    gateway = await chat.gateway()
    replicas = dict(CHAT_ANNOUNCE_INTERVAL_S="1", CHAT_ANNOUNCE_TEXT="Maintenance soon.")
    await chat.announcer(**replicas)
    await chat.announcer(**replicas)
    async with (
        connect(chat.ws_url(gateway, "red", user="Ann")) as red,
        connect(chat.ws_url(gateway, "blue", user="Bob")) as blue,
    ):
        for client in (red, blue):
            await client.expect("serverSystemMessage")
            await client.expect("serverPresence")
        # Both clients are read concurrently, so read times track arrival times.
        all_times = await asyncio.gather(*(announcement_times(c, 4) for c in (red, blue)))
        for client, times in zip((red, blue), all_times, strict=True):
            gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
            # One per period: a duplicate from the second replica would arrive
            # milliseconds after the first, not a period later.
            assert all(gap > 0.5 for gap in gaps), gaps
            assert all(
                m["payload"] == {"text": "Maintenance soon."}
                for m in client.received
                if m["type"] == "serverSystemAnnouncement"
            )


def token(name: str = "Alice", **options: float) -> str:
    return issue_token(SECRET, name, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        pytest.param(lambda: {"token": token()}, 101, id="valid-token"),
        pytest.param(
            lambda: {"token": issue_token("another-secret-that-is-long-enough-x", "Alice")},
            403,
            id="bad-signature",
        ),
        pytest.param(lambda: {"token": token(ttl_s=60, now=time.time() - 3600)}, 403, id="expired"),
        pytest.param(lambda: {}, 403, id="no-token"),
        pytest.param(lambda: {"user": "Alice"}, 403, id="dev-user-param-ignored"),
    ],
)
async def test_jwt_handshake(chat: Cluster, query: object, status: int) -> None:
    await chat.rooms()
    gateway = await chat.gateway(CHAT_AUTH="jwt", CHAT_JWT_SECRET=SECRET)
    params = query()  # type: ignore[operator]
    assert await handshake_status(chat.ws_url(gateway, "general", **params)) == status
    if status == 101:
        async with connect(chat.ws_url(gateway, "general", **params)) as client:
            welcome = await client.expect("serverSystemMessage")
            assert welcome["payload"]["text"] == "Welcome Alice to room 'general'!"
