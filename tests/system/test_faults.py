"""Processes killed while people chat: the rooms service, an announcer replica, a gateway.

Each test SIGKILLs a real process mid-conversation and checks that nothing is
silently lost: every chat message sent is received, exactly once and in order;
every presence announcement that should come comes once, and no other does.
What a client sees during each fault is written in the README ("What happens
when something fails").
"""

from __future__ import annotations

import asyncio
import time

from falcon_pachinko.testing import WSClient, connect, scaled

from .cluster import Cluster, Service
from .test_distributed import eventually, joined, send
from .test_presence import metric, presence_news, settle


async def exchange(a: WSClient, b: WSClient, tag: str, count: int = 20) -> None:
    """``a`` and ``b`` each send ``count`` messages; both receive all ``2 * count``, in order."""
    for i in range(count):
        await a.send_json(send(f"{tag}-a{i}"))
        await b.send_json(send(f"{tag}-b{i}"))
    for client in (a, b):
        got: dict[str, list[str]] = {"a": [], "b": []}
        for _ in range(2 * count):
            text = (await client.expect("serverNewMessage"))["payload"]["text"]
            prefix, _, suffix = text.partition("-")
            assert prefix == tag, f"unexpected message {text!r}"
            got[suffix[0]].append(suffix)
        for side in ("a", "b"):
            assert got[side] == [f"{side}{i}" for i in range(count)], (side, got[side])


async def test_chat_goes_on_while_the_rooms_service_is_killed_and_comes_back(
    chat: Cluster,
) -> None:
    # The killed process leaves its lease behind: the new one waits this long
    # before it announces (nothing it decides meanwhile is lost).
    lease = {"CHAT_ROOMS_LEASE_TTL_S": "1"}
    rooms = await chat.rooms(**lease)
    a, b = await chat.gateway(), await chat.gateway()
    async with (
        connect(chat.ws_url(a, "general", user="Ann")) as ann,
        connect(chat.ws_url(b, "general", user="Ben")) as ben,
    ):
        await joined(ann)
        await joined(ben)
        assert (await ann.expect("serverUserJoined"))["payload"] == {"user": "Ben"}

        await rooms.kill()
        # Room traffic goes gateway -> NATS -> gateway: not one message is lost.
        await exchange(ann, ben, "outage")
        async with connect(chat.ws_url(a, "general", user="Cat")) as cat:
            # Joining works; the welcome comes, the roster does not (no directory).
            await cat.expect("serverSystemMessage")
            await settle(cat, ann, ben)
            assert [m["type"] for m in cat.received if m["type"] == "serverPresence"] == []
            # No one is told that Cat arrived: no one decides presence right now.
            assert presence_news(ann) == [("serverUserJoined", "Ben")]
            assert presence_news(ben) == []

            rooms = await chat.rooms(**lease)  # a fresh process, memory empty

            async def rebuilt() -> bool:
                connections = await asyncio.to_thread(metric, rooms, "chat_rooms_connections")
                active = await asyncio.to_thread(metric, rooms, "chat_rooms_active")
                return connections == 3 and active == 1

            # Membership is rebuilt from the gateways' snapshots: Ann, Ben and Cat;
            # and the dead process's lease is taken over.
            await eventually(rebuilt, "the restarted rooms service knows all three")
            async with connect(chat.ws_url(b, "general", user="Dan")) as dan:
                roster = (await joined(dan)).received[1]["payload"]["users"]
                assert roster == ["Ann", "Ben", "Cat", "Dan"]
                await exchange(ann, dan, "after")
            assert (await ann.expect("serverUserLeft"))["payload"] == {"user": "Dan"}
        # Cat (whose arrival was never announced) left: announced once, like anyone.
        assert (await ann.expect("serverUserLeft"))["payload"] == {"user": "Cat"}
        await ben.close()
        assert (await ann.expect("serverUserLeft"))["payload"] == {"user": "Ben"}
        await settle(ann)
        # The restarted service announced no one who was already there, even when
        # a gateway's heartbeat reached it before that gateway's snapshot.
        assert presence_news(ann) == [
            ("serverUserJoined", "Ben"),
            ("serverUserJoined", "Dan"),
            ("serverUserLeft", "Dan"),
            ("serverUserLeft", "Cat"),
            ("serverUserLeft", "Ben"),
        ]
    assert all(s.returncode is None for s in (rooms, a, b)), "a service exited"


def announced_periods(replica: Service) -> list[int]:
    return [e["period"] for e in replica.logs if e.get("event") == "announcer.announced"]


async def test_an_announcer_replica_killed_holding_a_period_hands_the_next_to_the_other(
    chat: Cluster,
) -> None:
    await chat.rooms()
    gateway = await chat.gateway()
    replicas = dict(CHAT_ANNOUNCE_INTERVAL_S="1", CHAT_ANNOUNCE_TEXT="Maintenance soon.")
    first, second = await chat.announcer(**replicas), await chat.announcer(**replicas)
    async with connect(chat.ws_url(gateway, "general", user="Ann")) as ann:
        await joined(ann)
        # Whichever replica wins the next period is killed right after announcing
        # (it holds that period's lease key until the period ends).
        done, _ = await asyncio.wait(
            [
                asyncio.ensure_future(r.wait_for(lambda e: e.get("event") == "announcer.announced"))
                for r in (first, second)
            ],
            return_when=asyncio.FIRST_COMPLETED,
        )
        held = done.pop().result()["period"]
        doomed, survivor = (first, second) if held in announced_periods(first) else (second, first)
        await doomed.kill()
        killed_at = time.monotonic()
        await ann.expect("serverSystemAnnouncement", timeout_s=3)  # the held period's

        # The next period goes to the survivor; one announcement per period after.
        arrivals = []
        for _ in range(2):
            await ann.expect("serverSystemAnnouncement", timeout_s=3)
            arrivals.append(time.monotonic())
        assert arrivals[0] - killed_at < scaled(2.5), "the next period was not announced"
        assert arrivals[1] - arrivals[0] > 0.5, "two announcements in one period"
        periods = announced_periods(survivor)
        assert held + 1 in periods, (held, periods)
        assert held not in periods, "the held period was announced twice"
        everyone = announced_periods(doomed) + periods
        assert len(everyone) == len(set(everyone)), f"a period announced twice: {everyone}"
        assert survivor.returncode is None


async def test_a_killed_gateways_users_are_announced_left_once_and_served_elsewhere(
    chat: Cluster,
) -> None:
    await chat.rooms()
    survivor, doomed = await chat.gateway(), await chat.gateway()
    async with connect(chat.ws_url(survivor, "general", user="Stayer")) as stayer:
        await joined(stayer)
        async with (
            connect(chat.ws_url(doomed, "general", user="Goner")) as goner,
            connect(chat.ws_url(doomed, "general", user="Mover")) as mover,
        ):
            await joined(goner)
            await joined(mover)
            for _ in range(2):
                await stayer.expect("serverUserJoined")
            await doomed.kill()
            # Their sockets drop (no close frame from a dead process).
            assert await mover.expect_close() == 1006
            assert await goner.expect_close() == 1006
        # Mover reconnects to the other gateway, as any client would, and is served.
        async with connect(chat.ws_url(survivor, "general", user="Mover")) as back:
            await back.expect("serverSystemMessage")
            roster = (await back.expect("serverPresence"))["payload"]["users"]
            assert "Stayer" in roster and "Mover" in roster
            # Goner did not come back: announced as left once, within the TTL.
            left = await stayer.expect("serverUserLeft", timeout_s=10)
            assert left["payload"] == {"user": "Goner"}
            await exchange(stayer, back, "after")
            await settle(stayer, back)
            # Mover moved without being announced as left (or joined again).
            assert presence_news(stayer) == [
                ("serverUserJoined", "Goner"),
                ("serverUserJoined", "Mover"),
                ("serverUserLeft", "Goner"),
            ]
