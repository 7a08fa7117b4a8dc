"""What the gateways report about themselves, across real processes.

nats-server, chat-rooms and two gateways: the self-probe keeps a gateway ready
and its round trips are exported; a stored message's end-to-end latency is
counted once per message on every gateway that has members in the room; and
after a scripted session across both gateways, every counter scraped from them
and from chat-rooms equals what the session did.
"""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request

import pytest

from falcon_pachinko.testing import connect, scaled
from falcon_pachinko.testing.nats import NatsServer

from .cluster import Cluster, Service, http_status

pytestmark = pytest.mark.system

PROBE = {"CHAT_PROBE_INTERVAL_S": "0.3", "CHAT_PROBE_TIMEOUT_S": "0.2"}


def metrics(service: Service) -> dict[str, float]:
    url = f"http://127.0.0.1:{service.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        samples = {}
        for line in resp.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples


async def eventually_metric(service: Service, name: str, at_least: float) -> dict[str, float]:
    async with asyncio.timeout(scaled(10)):
        while True:
            samples = await asyncio.to_thread(metrics, service)
            if samples.get(name, 0) >= at_least:
                return samples
            await asyncio.sleep(0.1)


async def test_probes_keep_gateways_ready_and_latency_is_counted_per_message(
    chat: Cluster,
) -> None:
    await chat.rooms()
    a, b = await chat.gateway(**PROBE), await chat.gateway(**PROBE)
    for gateway in (a, b):
        samples = await eventually_metric(gateway, "chat_gateway_nats_probe_rtt_seconds_count", 2)
        assert samples["chat_gateway_nats_hearing"] == 1
        assert samples["chat_gateway_nats_probes_lost_total"] == 0
        assert await asyncio.to_thread(http_status, gateway.port, "/readyz") == 200

    async with (
        connect(chat.ws_url(a, "general", user="Ann")) as ann,
        connect(chat.ws_url(b, "general", user="Bob")) as bob,
        connect(chat.ws_url(b, "general", user="Cat")) as cat,
    ):
        for client in (ann, bob, cat):
            await client.expect("serverHistory")
        for n in range(3):
            await ann.send_json({"type": "clientSendMessage", "payload": {"text": f"m{n}"}})
        for client in (ann, bob, cat):
            for _ in range(3):
                await client.expect("serverNewMessage")
    # Three messages: three observations on each gateway, however many members.
    for gateway in (a, b):
        samples = await eventually_metric(gateway, "chat_gateway_delivery_latency_seconds_count", 3)
        assert samples["chat_gateway_delivery_latency_seconds_count"] == 3
        assert samples['chat_gateway_delivery_latency_seconds_bucket{le="+Inf"}'] == 3
        assert 0 <= samples["chat_gateway_delivery_latency_seconds_sum"] < 3 * 5


async def test_a_gateway_that_stops_hearing_nats_stops_being_ready(chat: Cluster) -> None:
    await chat.rooms()
    gateway = await chat.gateway(**PROBE)
    await eventually_metric(gateway, "chat_gateway_nats_probe_rtt_seconds_count", 1)
    assert await asyncio.to_thread(http_status, gateway.port, "/readyz") == 200
    nats = chat.nats
    assert isinstance(nats, NatsServer) and nats.process is not None
    # Frozen, not gone: the TCP connection stays up and the client still says
    # connected, but nothing comes back.
    os.kill(nats.process.pid, signal.SIGSTOP)
    try:
        async with asyncio.timeout(scaled(10)):
            while await asyncio.to_thread(http_status, gateway.port, "/readyz") != 503:
                await asyncio.sleep(0.1)
    finally:
        os.kill(nats.process.pid, signal.SIGCONT)
    samples = await eventually_metric(gateway, "chat_gateway_nats_hearing", 1)
    assert samples["chat_gateway_nats_probes_lost_total"] >= 2
    assert await asyncio.to_thread(http_status, gateway.port, "/readyz") == 200


#: What clients are sent through the room (and so counted as delivered).
ROOM_TYPES = ("serverNewMessage", "serverUserJoined", "serverUserLeft")


async def counted(service: Service, expected: dict[str, float], before: dict[str, float]) -> None:
    """The counters of ``service`` moved by exactly ``expected`` since ``before``:
    polled until each has moved that far (they are exported as things happen), then
    compared, so a counter that moved too far fails as well as one that lags."""
    samples: dict[str, float] = {}
    try:
        async with asyncio.timeout(scaled(10)):
            while True:
                samples = await asyncio.to_thread(metrics, service)
                moved = {n: samples.get(n, 0) - before.get(n, 0) for n in expected}
                if all(moved[n] >= v for n, v in expected.items()):
                    break
                await asyncio.sleep(0.1)
    except TimeoutError:
        pass
    moved = {n: samples.get(n, 0) - before.get(n, 0) for n in expected}
    assert moved == expected, f"{service.name}: counted {moved}, happened {expected}"


async def test_after_a_scripted_session_the_counters_equal_what_happened(chat: Cluster) -> None:
    rooms = await chat.rooms()
    a, b = await chat.gateway(), await chat.gateway()
    before = {id(s): await asyncio.to_thread(metrics, s) for s in (rooms, a, b)}

    async with connect(chat.ws_url(a, "general", user="Ann")) as ann:
        await ann.expect("serverHistory")
        async with connect(chat.ws_url(b, "general", user="Bob")) as bob:
            await bob.expect("serverHistory")
            await ann.expect("serverUserJoined")
            async with connect(chat.ws_url(b, "general", user="Cat")) as cat:
                await cat.expect("serverHistory")
                for client in (ann, bob):
                    await client.expect("serverUserJoined")
                # Ann sends three, Bob two: each reaches all three of them.
                for sender, texts in ((ann, ("a1", "a2", "a3")), (bob, ("b1", "b2"))):
                    for text in texts:
                        await sender.send_json(
                            {"type": "clientSendMessage", "payload": {"text": text}}
                        )
                for client in (ann, bob, cat):
                    for _ in range(5):
                        await client.expect("serverNewMessage")
            # Cat leaves: Ann and Bob are told.
            for client in (ann, bob):
                assert (await client.expect("serverUserLeft"))["payload"] == {"user": "Cat"}
        assert (await ann.expect("serverUserLeft"))["payload"] == {"user": "Bob"}
        await counted(a, {"chat_gateway_connections": 1}, {})  # Ann, still here
        await counted(b, {"chat_gateway_connections": 0}, {})
        delivered_a = sum(m["type"] in ROOM_TYPES for m in ann.received)
        delivered_b = sum(m["type"] in ROOM_TYPES for c in (bob, cat) for m in c.received)
    assert delivered_a == 5 + 2 + 2  # five messages, Bob's and Cat's joins and leaves
    assert delivered_b == 5 * 2 + 1 + 1  # five messages each, Cat's join and leave to Bob

    for gateway, opened, sent, delivered in ((a, 1, 3, delivered_a), (b, 2, 2, delivered_b)):
        await counted(
            gateway,
            {
                "chat_gateway_connections_opened_total": opened,
                "chat_gateway_frames_received_total": sent,
                "chat_gateway_messages_stored_total": sent,
                "chat_gateway_frames_delivered_total": delivered,
                # Once per message per gateway with members, however many members.
                "chat_gateway_delivery_latency_seconds_count": 5,
                "chat_gateway_connections": 0,
                "chat_gateway_duplicate_sends_total": 0,
                "chat_gateway_messages_rate_limited_total": 0,
                "chat_gateway_slow_consumer_disconnects_total": 0,
            },
            before[id(gateway)],
        )
    await counted(
        rooms,
        {
            "chat_rooms_arrivals_announced_total": 3,
            "chat_rooms_departures_announced_total": 3,
            "chat_rooms_members_lost_total": 0,
        },
        before[id(rooms)],
    )
