"""The gateway's client limits over real uvicorn and real WebSocket clients.

Message budget (``rate_limited``, 1008 for floods), token expiry (4002), a full
gateway (503) and a stuck handshake (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chat_gateway.app import create_app
from chat_gateway.auth import issue_token
from chat_gateway.server import uvicorn_options
from chat_gateway.settings import load_settings
from falcon_pachinko import Backend
from falcon_pachinko.backends import InProcessBroker, InProcessHistory, InProcessPresence
from falcon_pachinko.testing import LiveServer, WSClient, connect, scaled, serve

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-0123456789abcdef"
RATE_PER_S = 10
BURST = 20
#: How promptly a marker must reach an unaffected client while another floods.
PROMPT_S = scaled(1.0)


class Gateway:
    def __init__(self, server: LiveServer, registry: CollectorRegistry) -> None:
        self.server = server
        self.registry = registry

    def url(self, room: str, **query: str) -> str:
        return self.server.ws_url(f"/ws/chat/{room}", query)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def gateway(
    backend: Backend | None = None, wall_clock: Callable[[], float] = time.time, **env: str
) -> AsyncIterator[Gateway]:
    settings = load_settings({"CHAT_AUTH": "dev", "CHAT_ANNOUNCE_INTERVAL_S": "0", **env})
    registry = CollectorRegistry()
    app = create_app(settings, backend, registry=registry, wall_clock=wall_clock)
    async with serve(app, **{**uvicorn_options(settings), "port": 0}) as server:
        yield Gateway(server, registry)


def send_message(text: str) -> dict[str, Any]:
    return {"type": "clientSendMessage", "payload": {"text": text}}


async def joined(client: WSClient) -> WSClient:
    await client.expect("serverSystemMessage")
    await client.expect("serverPresence")
    return client


async def marker_arrives(sender: WSClient, receiver: WSClient, text: str) -> None:
    """``sender`` says ``text``; ``receiver`` must have it within PROMPT_S."""
    await sender.send_json(send_message(text))
    async with asyncio.timeout(PROMPT_S):
        while True:
            message = await receiver.expect("serverNewMessage", PROMPT_S)
            if message["payload"]["text"] == text:
                return


async def flood(client: WSClient, count: int) -> int:
    """Send ``count`` messages as fast as the socket takes them; return how many went."""
    for sent in range(count):
        try:
            await client.send_json(send_message(f"flood {sent}"))
        except ConnectionClosed:
            return sent
    return count


async def test_a_flooder_is_limited_then_closed_while_others_keep_chatting() -> None:
    async with gateway() as gw:
        async with (
            connect(gw.url("general", user="Flooder")) as flooder,
            connect(gw.url("general", user="Bob")) as bob,
            connect(gw.url("other", user="Cleo")) as cleo,
        ):
            for client in (flooder, bob, cleo):
                await joined(client)
            loop = asyncio.get_running_loop()
            started = loop.time()
            flooding = asyncio.create_task(flood(flooder, 3000))
            # Others are served promptly while the flood is on: the same room, another room.
            await marker_arrives(cleo, cleo, "other room still works")
            await marker_arrives(bob, bob, "same room still works")

            assert await flooder.expect_close(scaled(5)) == 1008
            elapsed = loop.time() - started
            await flooding
            await marker_arrives(bob, bob, "after the flood")

        from_flooder = [
            m
            for m in bob.received
            if m.get("type") == "serverNewMessage" and m["payload"]["user"] == "Flooder"
        ]
        assert BURST <= len(from_flooder) <= BURST + RATE_PER_S * elapsed
        errors = [m for m in flooder.received if m.get("type") == "serverError"]
        assert errors and {e["payload"]["code"] for e in errors} == {"rate_limited"}
        refused = gw.metric("chat_gateway_messages_rate_limited_total")
        # Every refusal got its error, except the last one: it closed the socket.
        assert len(errors) == refused - 1
        assert gw.metric("chat_gateway_server_errors_total", code="rate_limited") == refused - 1
        assert gw.metric("chat_gateway_flood_disconnects_total") == 1
        assert not any(
            "flood" in m["payload"]["text"]
            for m in cleo.received
            if m.get("type") == "serverNewMessage"
        )


async def test_typing_notifications_count_against_the_same_budget() -> None:
    async with gateway() as gw, connect(gw.url("general", user="Typist")) as typist:
        await joined(typist)
        for _ in range(BURST):
            await typist.send_json({"type": "clientStartTyping"})
        await typist.send_json(send_message("one too many"))
        error = await typist.expect("serverError")
        assert error["payload"]["code"] == "rate_limited"
        assert not [m for m in typist.received if m.get("type") == "serverNewMessage"]


async def test_rate_zero_disables_the_budget() -> None:
    async with gateway(CHAT_RATE_PER_S="0") as gw, connect(gw.url("general", user="Bench")) as c:
        await joined(c)
        for i in range(200):
            await c.send_json(send_message(f"m{i}"))
        await marker_arrives(c, c, "done")
        assert gw.metric("chat_gateway_messages_rate_limited_total") == 0


async def test_a_connection_is_closed_with_4002_when_its_token_expires() -> None:
    env = {"CHAT_AUTH": "jwt", "CHAT_JWT_SECRET": SECRET}
    async with gateway(**env) as gw:
        token = issue_token(SECRET, "Alice", ttl_s=2)  # exp 1-2 s ahead (whole seconds)
        async with connect(gw.url("general", token=token)) as alice:
            await joined(alice)
            await alice.send_json(send_message("while valid"))
            await alice.expect("serverNewMessage")
            assert await alice.expect_close(scaled(4)) == 4002
            assert alice.conn.close_reason == "token expired"


async def test_token_expiry_is_measured_on_the_injected_wall_clock() -> None:
    now = time.time()
    token = issue_token(SECRET, "Alice", ttl_s=3600, now=now)
    skewed = now + 3600 - 0.2  # the gateway's clock says the token has 0.2 s left
    env = {"CHAT_AUTH": "jwt", "CHAT_JWT_SECRET": SECRET}
    async with gateway(wall_clock=lambda: skewed, **env) as gw:
        async with connect(gw.url("general", token=token)) as alice:
            await joined(alice)
            assert await alice.expect_close(scaled(2)) == 4002


async def test_a_full_gateway_answers_503_with_retry_after() -> None:
    async with gateway(CHAT_MAX_CONNECTIONS="2") as gw:
        async with (
            connect(gw.url("general", user="Ann")) as ann,
            connect(gw.url("general", user="Ben")) as ben,
        ):
            await joined(ann)
            await joined(ben)
            with pytest.raises(InvalidStatus) as caught:
                async with connect(gw.url("general", user="Cat")):
                    pass
            assert caught.value.response.status_code == 503
            assert caught.value.response.headers.get("Retry-After") == "5"
        assert gw.metric("chat_gateway_handshakes_rejected_total", reason="gateway_full") == 1


class _StuckBroker(InProcessBroker):
    """A join that never completes: NATS accepted the connection but never answers."""

    async def subscribe(self, room: str) -> None:
        await asyncio.Event().wait()


async def test_a_handshake_stuck_joining_is_refused_with_503() -> None:
    broker = _StuckBroker()
    backend = Backend(broker, InProcessPresence(), InProcessHistory(broker))
    async with gateway(backend, CHAT_CONNECT_TIMEOUT_S="0.3") as gw:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(gw.url("general", user="Ann"), timeout_s=3):
                pass
        assert caught.value.response.status_code == 503
        assert gw.metric("chat_gateway_handshakes_rejected_total", reason="connect_timeout") == 1
