"""A three-node NATS cluster loses the node a service is connected to, three times over.

Every service gets all three URLs in ``CHAT_NATS_URL``. Each round SIGKILLs the
node one service (gateway a, then the rooms service, then gateway b) is connected
to, as its ``nats.connected``/``nats.reconnected`` log lines say; every service
that was on it must fail over to another node by itself, chat must cross the
gateways both ways again without losing a message, and joins and leaves must
still be announced, exactly once. Then the node is restarted, and the next round
begins. No service may exit.

NATS core is at-most-once: a message published while its path is being rebuilt
(the subscriber's new node has not yet told the others of its interest) may be
lost, so each round first waits until probes cross (chat messages both ways, and
a probe user's join reaching the rooms service), then counts. Membership deltas
lost meanwhile are repaired by sequence; probe users are left out of the counts.

The cluster runs core NATS only (``CHAT_HISTORY=false``): this is the failover of
live traffic and presence. Durable rooms lose nothing here by design (a gateway
that misses a republished message closes the room's clients with 4003 and they
resume); their guarantees are tested in ``test_durable.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from falcon_pachinko.testing import WSClient, connect, scaled
from falcon_pachinko.testing.nats import NatsCluster

from .cluster import Cluster, Service, nats_cluster_chat
from .test_distributed import joined as joined_with_history
from .test_distributed import send
from .test_faults import exchange
from .test_presence import presence_news, settle


@pytest_asyncio.fixture
async def clustered(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with nats_cluster_chat(tmp_path, CHAT_HISTORY="false") as running:
        yield running


async def until_crossing(sender: WSClient, receiver: WSClient, tag: str) -> None:
    """Send probes until one reaches ``receiver``; then drain every probe, everywhere.

    The probes that did not make it are the messages NATS core drops while a
    subscription's interest is still on its way across the routes.
    """
    sent = 0
    async with asyncio.timeout(scaled(10)):
        while True:
            sent += 1
            await sender.send_json(send(f"{tag}-{sent}"))
            try:
                message = await receiver.expect("serverNewMessage", timeout_s=0.2)
            except TimeoutError:
                continue
            assert message["payload"]["text"].startswith(f"{tag}-")
            break
    # Everything sent from now on is counted: flush the probes out of both views.
    await settle(sender, receiver)


async def until_directory_path(chat: Cluster, gateway: Service, tag: str) -> None:
    """Join probe users through ``gateway`` until one finds itself in its roster.

    Then the gateway's membership deltas and queries reach the rooms service again.
    """
    attempt = 0
    async with asyncio.timeout(scaled(10)):
        while True:
            attempt += 1
            name = f"Probe{tag}x{attempt}"
            async with connect(chat.ws_url(gateway, "general", user=name)) as probe:
                await probe.expect("serverSystemMessage")
                roster = (await probe.expect("serverPresence"))["payload"]["users"]
            if name in roster:
                return


async def joined(client: WSClient) -> WSClient:
    return await joined_with_history(client, history=False)


def news(client: WSClient) -> list[tuple[str, str]]:
    return [n for n in presence_news(client) if not n[1].startswith("Probe")]


async def next_news(client: WSClient, kind: str) -> str:
    """The user of the next ``kind`` announcement that is not about a probe user."""
    while True:
        user: str = (await client.expect(kind))["payload"]["user"]
        if not user.startswith("Probe"):
            return user


def node_of(chat: Cluster, service: Service) -> int:
    assert isinstance(chat.nats, NatsCluster)
    server = service.nats_server
    assert server is not None, f"{service.name} is not connected:\n{service.tail()}"
    return chat.nats.index_of(server)


async def test_every_service_fails_over_when_its_nats_node_is_killed(clustered: Cluster) -> None:
    chat = clustered
    nats = chat.nats
    assert isinstance(nats, NatsCluster)
    rooms = await chat.rooms()
    a, b = await chat.gateway(), await chat.gateway()
    services = (rooms, a, b)
    expected_news: list[tuple[str, str]] = [("serverUserJoined", "Ben")]
    async with (
        connect(chat.ws_url(a, "general", user="Ann")) as ann,
        connect(chat.ws_url(b, "general", user="Ben")) as ben,
    ):
        await joined(ann)
        await joined(ben)
        await ann.expect("serverUserJoined")

        for round_, target in enumerate((a, rooms, b)):
            victim = node_of(chat, target)
            moving = [s for s in services if node_of(chat, s) == victim]
            marks = {id(s): len(s.logs) for s in services}
            await nats.kill(victim)
            for service in moving:
                event = await service.wait_for(
                    service.since(marks[id(service)], "nats.reconnected"), timeout_s=15
                )
                assert nats.index_of(event["server"]) != victim, event
            # Services on other nodes never noticed.
            for service in set(services) - set(moving):
                dropped = service.since(marks[id(service)], "nats.disconnected")
                assert not any(dropped(e) for e in service.logs), service.name

            await until_crossing(ann, ben, f"probe{round_}ab")
            await until_crossing(ben, ann, f"probe{round_}ba")
            await exchange(ann, ben, f"round{round_}")
            await until_directory_path(chat, a, str(round_))

            # A new arrival, and its departure, are announced across the gateways.
            newcomer = f"New{round_}"
            async with connect(chat.ws_url(a, "general", user=newcomer)) as new:
                roster = (await joined(new)).received[1]["payload"]["users"]
                assert roster == sorted(["Ann", "Ben", newcomer])
                assert await next_news(ben, "serverUserJoined") == newcomer
            assert await next_news(ben, "serverUserLeft") == newcomer
            expected_news += [("serverUserJoined", newcomer), ("serverUserLeft", newcomer)]

            await nats.restart(victim)  # back on its port; the mesh is whole again

        await settle(ben, ann)
        assert news(ann) == expected_news
        assert news(ben) == expected_news[1:]
    assert all(s.returncode is None for s in services), "a service exited"
