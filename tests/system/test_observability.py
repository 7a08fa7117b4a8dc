"""What the gateways report about themselves, across real processes.

nats-server, chat-rooms and two gateways: the self-probe keeps a gateway ready
and its round trips are exported; a stored message's end-to-end latency is
counted once per message on every gateway that has members in the room.
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
