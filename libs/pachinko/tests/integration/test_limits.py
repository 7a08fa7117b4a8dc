"""Per-connection and per-process limits over a real uvicorn server and real clients."""

from __future__ import annotations

import asyncio
from typing import Any

import falcon.asgi
import pytest
import websockets
from websockets.exceptions import InvalidStatus

import falcon_pachinko
from falcon_pachinko import (
    CloseCode,
    ConnectionLimits,
    WebSocketConnectionManager,
    WebSocketLike,
    WebSocketResource,
    handles_message,
)
from falcon_pachinko.testing import connect, handshake_status, scaled, serve

pytestmark = pytest.mark.integration


class Limited(WebSocketResource):
    async def on_connect(self, req: Any, ws: WebSocketLike, mode: str) -> bool:
        await self.join_room("lobby")
        if mode == "hang":
            await asyncio.Event().wait()
        if mode == "expiring":
            self.close_after(float(req.get_param("in")), reason="token expired")
        await ws.send_media({"type": "welcome"})
        return True

    @handles_message("echo")
    async def echo(self, ws: WebSocketLike, payload: Any) -> None:
        await ws.send_media({"type": "echoed"})

    async def on_rate_limited(self, ws: WebSocketLike, message: str | bytes) -> None:
        await ws.send_media({"type": "rateLimited"})


def limited_app(max_connections: int | None = None, **limits: Any) -> falcon.asgi.App[Any, Any]:
    app: falcon.asgi.App[Any, Any] = falcon.asgi.App()
    falcon_pachinko.install(app, limits=ConnectionLimits(**limits), max_connections=max_connections)
    app.add_websocket_route("/ws/{mode}", Limited)  # type: ignore[attr-defined]
    return app


def manager_of(app: falcon.asgi.App[Any, Any]) -> WebSocketConnectionManager:
    return app.ws_connection_manager  # type: ignore[attr-defined,no-any-return]


async def test_a_deadline_closes_a_connected_client_with_its_code() -> None:
    async with serve(limited_app()) as server:
        url = server.ws_url("/ws/expiring", {"in": "0.3"})
        async with connect(url) as client:
            assert (await client.receive())["type"] == "welcome"
            await client.send_json({"type": "echo"})
            assert (await client.receive())["type"] == "echoed"
            assert await client.expect_close(scaled(3)) == CloseCode.CREDENTIALS_EXPIRED
            assert client.conn.close_reason == "token expired"


async def test_a_deadline_already_past_at_the_handshake_closes_right_after_the_accept() -> None:
    async with serve(limited_app()) as server:
        async with connect(server.ws_url("/ws/expiring", {"in": "-1"})) as client:
            assert await client.expect_close(scaled(3)) == CloseCode.CREDENTIALS_EXPIRED
            assert [m["type"] for m in client.received] == ["welcome"]


async def test_a_full_process_answers_503_with_retry_after_until_a_place_frees() -> None:
    app = limited_app(max_connections=2)
    async with serve(app) as server:
        url = server.ws_url("/ws/ok")
        async with connect(url) as first, connect(url) as second:
            for client in (first, second):
                assert (await client.receive())["type"] == "welcome"
            with pytest.raises(InvalidStatus) as caught:
                async with websockets.connect(url, open_timeout=scaled(5)):
                    pass
            response = caught.value.response
            assert response.status_code == 503
            assert response.headers.get("Retry-After") == "5"
            assert manager_of(app).connection_count == 2  # the refusal did not count
        async with asyncio.timeout(scaled(3)):
            while manager_of(app).connection_count:
                await asyncio.sleep(0.01)
        assert await handshake_status(url) == 101
    assert manager_of(app).stats.refused_full == 1


async def test_an_on_connect_that_hangs_is_refused_with_503_and_its_room_left() -> None:
    app = limited_app(connect_timeout_s=0.2)
    async with serve(app) as server:
        async with asyncio.timeout(scaled(3)):
            assert await handshake_status(server.ws_url("/ws/hang")) == 503
        assert manager_of(app).local_rooms() == []
        assert manager_of(app).connection_count == 0
        assert await handshake_status(server.ws_url("/ws/ok")) == 101  # unharmed
    assert manager_of(app).stats.connect_timeouts == 1


async def test_a_flooding_client_is_closed_with_1008_and_others_are_served() -> None:
    app = limited_app(rate_per_s=5, rate_burst=10)
    async with serve(app) as server:
        url = server.ws_url("/ws/ok")
        async with connect(url) as flooder, connect(url) as bystander:
            await flooder.expect("welcome")
            await bystander.expect("welcome")
            loop = asyncio.get_running_loop()
            started = loop.time()
            for _ in range(500):
                await flooder.send_json({"type": "echo"})
            assert await flooder.expect_close(scaled(5)) == CloseCode.POLICY_VIOLATION
            elapsed = loop.time() - started
            kinds = [m["type"] for m in flooder.received[1:]]
            assert kinds.count("echoed") <= 10 + 5 * elapsed  # burst + rate x elapsed
            assert "rateLimited" in kinds
            await bystander.send_json({"type": "echo"})
            assert (await bystander.expect("echoed", scaled(1)))["type"] == "echoed"
    assert manager_of(app).stats.rate_limit_closes == 1
