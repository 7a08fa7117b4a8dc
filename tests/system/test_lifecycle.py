"""How services end: cleanly on SIGTERM, and with exit 1 when they cannot go on."""

from __future__ import annotations

import socket

from falcon_pachinko.testing import connect

from .cluster import Cluster, Service


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
