"""User-level presence across gateways: one rule however a user arrives or goes.

Gateways, the rooms service and nats-server run as real processes. Presence is
decided once, by the rooms service: a user is announced as joined for their
first connection in a room and as left when their last one is gone.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from typing import Any

from falcon_pachinko.testing import WSClient, connect, scaled

from .cluster import Cluster, Service
from .test_distributed import eventually, joined, send

PRESENCE_TYPES = ("serverUserJoined", "serverUserLeft")
#: The rooms service's CHAT_PRESENCE_BATCH_S (its default): how long a change
#: that follows another may be held before it is announced.
PRESENCE_BATCH_S = 0.05


def presence_news(client: WSClient) -> list[tuple[str, str]]:
    """Every join/leave announcement the client received, in order."""
    return [
        (m["type"], m["payload"]["user"]) for m in client.received if m["type"] in PRESENCE_TYPES
    ]


async def settle(sender: WSClient, *others: WSClient) -> None:
    """Send a marker through the room: whatever was announced before it has arrived."""
    # A change decided just now may be held for one batch window: the marker goes
    # after it is published, so a change that should not have happened is seen.
    await asyncio.sleep(scaled(PRESENCE_BATCH_S))
    marker = f"marker-{time.monotonic_ns()}"
    await sender.send_json(send(marker))
    for client in (sender, *others):
        while (await client.expect("serverNewMessage"))["payload"]["text"] != marker:
            pass


def metric(service: Service, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported by {service.name}")


async def test_two_tabs_on_two_gateways_are_one_user(chat: Cluster) -> None:
    await chat.rooms()
    a, b = await chat.gateway(), await chat.gateway()
    async with connect(chat.ws_url(a, "general", user="Bob")) as bob:
        await joined(bob)
        async with connect(chat.ws_url(a, "general", user="Alice")) as tab1:
            await joined(tab1)
            await bob.expect("serverUserJoined")
            async with connect(chat.ws_url(b, "general", user="Alice")) as tab2:
                roster = (await joined_roster(tab2))["payload"]["users"]
                assert roster == ["Alice", "Bob"]
                await settle(bob, tab1, tab2)
                assert presence_news(bob) == [("serverUserJoined", "Alice")]
            # Alice closed one tab; she is still here.
            await settle(bob, tab1)
            assert presence_news(bob) == [("serverUserJoined", "Alice")]
        left = await bob.expect("serverUserLeft")
        assert left["payload"] == {"user": "Alice"}
        await settle(bob)
        assert presence_news(bob) == [("serverUserJoined", "Alice"), ("serverUserLeft", "Alice")]


async def joined_roster(client: WSClient) -> dict[str, Any]:
    await client.expect("serverSystemMessage")
    return await client.expect("serverPresence")


async def test_the_roster_on_join_spans_gateways(chat: Cluster) -> None:
    await chat.rooms()
    a, b = await chat.gateway(), await chat.gateway()
    async with (
        connect(chat.ws_url(a, "lobby", user="Ann")) as ann,
        connect(chat.ws_url(b, "lobby", user="Ben")) as ben,
        connect(chat.ws_url(b, "elsewhere", user="Eve")) as eve,
    ):
        for client in (ann, ben, eve):
            await joined(client)
        async with connect(chat.ws_url(a, "lobby", user="Cat")) as cat:
            welcome = await cat.receive()
            assert welcome["type"] == "serverSystemMessage"
            assert await cat.receive() == {
                "type": "serverPresence",
                "payload": {"users": ["Ann", "Ben", "Cat"]},
            }


async def test_a_typist_whose_gateway_is_killed_stops_typing(chat: Cluster) -> None:
    await chat.rooms()
    survivor, doomed = await chat.gateway(), await chat.gateway()
    async with (
        connect(chat.ws_url(survivor, "general", user="Watcher")) as watcher,
        connect(chat.ws_url(doomed, "general", user="Typist")) as typist,
    ):
        await joined(watcher)
        await joined(typist)
        await typist.send_json({"type": "clientStartTyping"})
        typing = await watcher.expect("serverUserTyping")
        assert typing["payload"] == {"user": "Typist", "isTyping": True}
        killed_at = time.monotonic()
        await doomed.kill()
        stopped = await watcher.expect("serverUserTyping", timeout_s=10)
        elapsed = time.monotonic() - killed_at
        assert stopped["payload"] == {"user": "Typist", "isTyping": False}
        # Within the typing TTL (6 s by default); the presence TTL here is 2 s.
        assert elapsed < scaled(6), f"typing stopped after {elapsed:.1f}s"
        assert (await watcher.expect("serverUserLeft"))["payload"] == {"user": "Typist"}


async def test_a_rolling_restart_announces_no_one(chat: Cluster) -> None:
    rooms = await chat.rooms(CHAT_PRESENCE_GRACE_S="3")
    old, new = await chat.gateway(), await chat.gateway()
    async with connect(chat.ws_url(new, "general", user="Watcher")) as watcher:
        await joined(watcher)
        async with (
            connect(chat.ws_url(old, "general", user="Mover")) as mover,
            connect(chat.ws_url(old, "general", user="Ghost")) as ghost,
        ):
            await joined(mover)
            await joined(ghost)
            for _ in range(2):
                await watcher.expect("serverUserJoined")
            stopping = asyncio.create_task(old.stop())
            # Both are told to come back (1012); only Mover does, to the other gateway.
            assert await mover.expect_close() == 1012
            assert await ghost.expect_close() == 1012
            restarted_at = time.monotonic()
            async with connect(chat.ws_url(new, "general", user="Mover")) as back:
                roster = (await joined_roster(back))["payload"]["users"]
                assert "Mover" in roster and "Watcher" in roster
                assert await stopping == 0
                # Ghost did not come back: announced as left once the grace ends.
                left = await watcher.expect("serverUserLeft", timeout_s=10)
                assert left["payload"] == {"user": "Ghost"}
                waited = time.monotonic() - restarted_at
                assert waited < scaled(3 + 0.2 + 3), f"left after {waited:.1f}s"

                async def grace_over() -> bool:
                    return await asyncio.to_thread(metric, rooms, "chat_rooms_presence_held") == 0

                await eventually(grace_over, "every held user released")
                await settle(watcher, back)
                # Mover moved without flapping: never announced as left or joined again.
                assert presence_news(watcher) == [
                    ("serverUserJoined", "Mover"),
                    ("serverUserJoined", "Ghost"),
                    ("serverUserLeft", "Ghost"),
                ]
