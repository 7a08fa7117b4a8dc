"""How services start and end.

They end cleanly on SIGTERM (0), and with exit 1 when they cannot go on. NATS
unreachable at start is not fatal: each service listens at once, reports not
ready (``/readyz`` 503, ``/healthz`` 200, the gateway refuses WebSocket
handshakes with HTTP 503) and becomes ready by itself once NATS is there, unless
``CHAT_NATS_CONNECT_TIMEOUT_S`` passes first (exit 1).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import pytest

from falcon_pachinko.testing import connect, handshake_status

from .cluster import Cluster, Service, http_status, late_nats_chat
from .test_distributed import joined, send


async def test_every_service_exits_0_on_sigterm_after_draining(chat: Cluster) -> None:
    rooms = await chat.rooms()
    announcer = await chat.announcer()
    gateway = await chat.gateway()
    async with connect(chat.ws_url(gateway, "general", user="Ann")) as ann:
        await ann.expect("serverSystemMessage")
        await ann.expect("serverPresence")
        assert await gateway.stop() == 0
        # The client was told the gateway is restarting, so it may reconnect elsewhere.
        assert await ann.expect_close() == 1012
    assert await announcer.stop() == 0
    assert await rooms.stop() == 0


async def test_a_gateway_that_cannot_listen_exits_1_with_a_message(chat: Cluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = Service("gateway", "chat_gateway", chat.env(CHAT_PORT=str(port)))
        chat.services.append(service)
        try:
            await service.start(timeout_s=10)
        except AssertionError:
            pass  # it exited before becoming ready, as it should
        assert await service.wait_exit() == 1
        assert any(f"cannot serve on 127.0.0.1:{port}" in e.get("line", "") for e in service.logs)


async def test_services_exit_1_when_nats_is_gone_for_good(chat: Cluster) -> None:
    give_up = {"CHAT_NATS_MAX_RECONNECT_ATTEMPTS": "2", "CHAT_NATS_RECONNECT_WAIT_S": "0.1"}
    rooms = await chat.rooms(**give_up)
    gateway = await chat.gateway(**give_up)
    await chat.nats.stop()
    for service in (rooms, gateway):
        assert await service.wait_exit() == 1, f"{service.name} did not exit 1"


async def statuses(service: Service) -> tuple[int, int]:
    """``(/healthz, /readyz)`` HTTP statuses of ``service``."""
    live = await asyncio.to_thread(http_status, service.port, "/healthz")
    ready = await asyncio.to_thread(http_status, service.port, "/readyz")
    return live, ready


async def test_services_started_before_nats_become_ready_when_it_appears(tmp_path: Path) -> None:
    async with late_nats_chat(tmp_path) as chat:
        rooms = await chat.rooms(until="service.listening")
        announcer = await chat.announcer(until="service.listening")
        a = await chat.gateway(until="service.listening")
        b = await chat.gateway(until="service.listening")
        services = (rooms, announcer, a, b)
        # Alive, listening, not ready: Kubernetes keeps them out of the Service.
        for service in services:
            assert await statuses(service) == (200, 503), service.name
        # A handshake is answered at once with 503 (retry), not left hanging.
        assert await handshake_status(chat.ws_url(a, "general", user="Early")) == 503
        # Still trying (not exited) after a few failed attempts each.
        for service in services:
            await service.wait_for(lambda e: e.get("event") == "nats.error")
            assert service.returncode is None, service.name

        await chat.nats.start()
        for service in services:
            ready = await service.wait_for(lambda e: e.get("event") == "service.ready", 15)
            assert ready["port"] == service.port
            assert await statuses(service) == (200, 200), service.name

        async with (
            connect(chat.ws_url(a, "general", user="Ann")) as ann,
            connect(chat.ws_url(b, "general", user="Ben")) as ben,
        ):
            await joined(ann)
            roster = await ben.expect("serverPresence")
            assert roster["payload"]["users"] == ["Ann", "Ben"]
            assert (await ann.expect("serverUserJoined"))["payload"] == {"user": "Ben"}
            await ben.send_json(send("hello"))
            assert (await ann.expect("serverNewMessage"))["payload"]["text"] == "hello"
        for service in services:
            assert await service.stop() == 0, service.name


@pytest.mark.parametrize("kind", ["rooms", "announcer", "gateway"])
async def test_a_service_exits_1_when_nats_never_comes_within_the_connect_timeout(
    tmp_path: Path, kind: str
) -> None:
    async with late_nats_chat(tmp_path, CHAT_NATS_CONNECT_TIMEOUT_S="1") as chat:
        service = await getattr(chat, kind)(until="service.listening")
        assert await statuses(service) == (200, 503)
        assert await service.wait_exit(timeout_s=10) == 1
        assert any("CHAT_NATS_CONNECT_TIMEOUT_S" in e.get("line", "") for e in service.logs), (
            service.tail()
        )


@pytest.mark.parametrize("kind", ["rooms", "announcer", "gateway"])
async def test_sigterm_while_waiting_for_nats_exits_0(tmp_path: Path, kind: str) -> None:
    async with late_nats_chat(tmp_path) as chat:
        service = await getattr(chat, kind)(until="service.listening")
        await service.wait_for(lambda e: e.get("event") == "nats.error")
        assert await service.stop(signal.SIGTERM, timeout_s=5) == 0
