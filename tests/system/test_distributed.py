"""The distributed chat: gateways, rooms service and NATS as real processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from falcon_pachinko.testing import WSClient, connect, scaled

from .cluster import Cluster, Service

Check = Callable[[], Awaitable[bool]]


def send(text: str) -> dict[str, Any]:
    return {"type": "clientSendMessage", "payload": {"text": text}}


async def eventually(check: Check, what: str, timeout_s: float = 10) -> None:
    """Poll an eventually consistent view until ``check`` holds (bounded)."""
    try:
        async with asyncio.timeout(scaled(timeout_s)):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s}s: {what}") from None


async def joined(client: WSClient, *, history: bool = True) -> WSClient:
    """Wait for the join to finish: welcome, roster, and (durable rooms) history."""
    await client.expect("serverSystemMessage")
    await client.expect("serverPresence")
    if history:
        await client.expect("serverHistory")
    return client


async def rooms_seen_by(chat: Cluster, prefix: str = "") -> list[str]:
    """Ask the directory, as any process would (a manager on the NATS backend)."""
    from falcon_pachinko import WebSocketConnectionManager
    from falcon_pachinko.backends.nats import NatsBackend

    manager = WebSocketConnectionManager(NatsBackend(chat.nats.url, presence=False))
    await manager.start()
    try:
        return await manager.get_rooms_by_prefix(prefix)
    finally:
        await manager.stop()


async def until_listed(chat: Cluster, expected: list[str], prefix: str = "") -> None:
    """Wait until any process would see exactly ``expected`` rooms under ``prefix``."""

    async def check() -> bool:
        return await rooms_seen_by(chat, prefix) == expected

    await eventually(check, f"rooms {prefix!r}* listed as {expected}")


async def two_gateways(chat: Cluster) -> tuple[Service, Service]:
    await chat.rooms()
    return await chat.gateway(), await chat.gateway()


async def test_clients_on_two_gateways_chat_as_if_on_one(chat: Cluster) -> None:
    a, b = await two_gateways(chat)
    async with (
        connect(chat.ws_url(a, "general", user="Alice")) as alice,
        connect(chat.ws_url(a, "elsewhere", user="Eve")) as eve,
    ):
        await joined(alice)
        await joined(eve)
        async with connect(chat.ws_url(b, "general", user="Bob")) as bob:
            await joined(bob)
            assert await alice.receive() == {"type": "serverUserJoined", "payload": {"user": "Bob"}}

            # 15 each, and 3 more from Bob below: within the default burst (CHAT_RATE_BURST).
            for i in range(15):
                await alice.send_json(send(f"a{i}"))
                await bob.send_json(send(f"b{i}"))
            for client in (alice, bob):
                texts = [(await client.expect("serverNewMessage"))["payload"] for _ in range(30)]
                for sender in ("Alice", "Bob"):
                    mine = [t["text"] for t in texts if t["user"] == sender]
                    assert mine == [f"{sender[0].lower()}{i}" for i in range(15)], (sender, mine)

            # exclude_self across gateways: Bob's typing reaches Alice, not Bob.
            await bob.send_json({"type": "clientStartTyping"})
            await bob.send_json({"type": "clientStopTyping"})
            assert (await alice.receive())["payload"] == {"user": "Bob", "isTyping": True}
            assert (await alice.receive())["payload"] == {"user": "Bob", "isTyping": False}
            await bob.send_json(send("marker"))
            assert (await bob.receive())["payload"]["text"] == "marker"
            assert (await alice.receive())["payload"]["text"] == "marker"
            assert not [m for m in bob.received if m["type"] == "serverUserTyping"]
        assert await alice.receive() == {"type": "serverUserLeft", "payload": {"user": "Bob"}}

        # Eve, in another room on the same gateway, saw none of it.
        await eve.send_json(send("eve-marker"))
        assert (await eve.receive())["payload"]["text"] == "eve-marker"
        assert [m["type"] for m in eve.received] == [
            "serverSystemMessage",
            "serverPresence",
            "serverHistory",
            "serverNewMessage",
        ]


async def test_room_lists_are_cluster_wide_and_forget_empty_rooms(chat: Cluster) -> None:
    a, b = await two_gateways(chat)

    async with connect(chat.ws_url(b, "team-blue", user="Bob")) as bob:
        await joined(bob)
        # Only Bob, on gateway b, is in team-blue; any process sees the room.
        await until_listed(chat, ["team-blue"], "team-")
        async with connect(chat.ws_url(a, "team-red", user="Ann")) as ann:
            await joined(ann)
            await until_listed(chat, ["team-blue", "team-red"], "team-")
    await until_listed(chat, [], "team-")  # empty rooms are forgotten


async def test_users_of_a_killed_gateway_are_announced_as_left(chat: Cluster) -> None:
    survivor, doomed = await two_gateways(chat)
    async with (
        connect(chat.ws_url(survivor, "general", user="Stayer")) as stayer,
        connect(chat.ws_url(doomed, "general", user="Goner")) as goner,
    ):
        await joined(stayer)
        await joined(goner)
        await stayer.expect("serverUserJoined")
        killed_at = time.monotonic()
        await doomed.kill()
        left = await stayer.expect("serverUserLeft", timeout_s=10)
        elapsed = time.monotonic() - killed_at
        assert left["payload"] == {"user": "Goner"}
        # TTL 2 s plus one 0.2 s check interval, with slack for a loaded machine.
        assert elapsed < scaled(2 + 0.2 + 2), f"announced after {elapsed:.1f}s"
        # Exactly once: a marker sent afterwards arrives with nothing in between.
        await stayer.send_json(send("after"))
        await stayer.expect("serverNewMessage")
        assert [m["type"] for m in stayer.received].count("serverUserLeft") == 1


async def test_rooms_service_restart_recovers_membership(chat: Cluster) -> None:
    rooms = await chat.rooms()
    a, b = await chat.gateway(), await chat.gateway()
    async with (
        connect(chat.ws_url(a, "alpha", user="Ann")) as ann,
        connect(chat.ws_url(b, "beta", user="Ben")) as ben,
    ):
        await joined(ann)
        await joined(ben)

        await until_listed(chat, ["alpha", "beta"])
        assert await rooms.stop() == 0
        await chat.rooms()  # a fresh process with empty memory
        await until_listed(chat, ["alpha", "beta"])

        async with connect(chat.ws_url(b, "gamma", user="Gus")) as gus:
            await joined(gus)

            await until_listed(chat, ["alpha", "beta", "gamma"])


async def test_a_nats_restart_is_survived_by_every_service(chat: Cluster) -> None:
    rooms = await chat.rooms()
    a, b = await chat.gateway(), await chat.gateway()
    async with (
        connect(chat.ws_url(a, "general", user="Ann")) as ann,
        connect(chat.ws_url(b, "general", user="Ben")) as ben,
    ):
        await joined(ann)
        await joined(ben)
        await ann.expect("serverUserJoined")
        seen = {s.name + str(id(s)): len(s.logs) for s in (rooms, a, b)}

        await chat.nats.restart()  # same port, same JetStream store

        for service in (rooms, a, b):
            start = seen[service.name + str(id(service))]
            await service.wait_for(
                lambda e, s=service, i=start: (
                    e.get("event") == "nats.reconnected" and s.logs.index(e) >= i
                ),
                timeout_s=15,
            )
        # Room subscriptions were restored: chat crosses gateways again.
        await ben.send_json(send("after the restart"))
        assert (await ann.expect("serverNewMessage"))["payload"]["text"] == "after the restart"

        # The rooms service's view is right again (deltas lost meanwhile are resynced).
        await until_listed(chat, ["general"])
    assert all(s.returncode is None for s in (rooms, a, b)), "a service exited"
