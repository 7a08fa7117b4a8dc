"""Library behaviour over a real uvicorn server and real WebSocket clients."""

from __future__ import annotations

from typing import Any

import falcon.asgi
import pytest
import structlog

import falcon_pachinko
from falcon_pachinko import WebSocketLike, WebSocketResource, handles_message
from falcon_pachinko.testing import connect, serve

pytestmark = pytest.mark.integration


class Fragile(WebSocketResource):
    async def on_connect(self, req: Any, ws: WebSocketLike) -> bool:
        await self.join_room("lobby")
        return True

    @handles_message("explode")
    async def explode(self, ws: WebSocketLike, payload: dict[str, Any]) -> None:
        raise RuntimeError("a bug in a handler")

    @handles_message("echo")
    async def echo(self, ws: WebSocketLike, payload: dict[str, Any]) -> None:
        await ws.send_media({"type": "echoed", "payload": payload})

    async def on_handler_error(
        self, ws: WebSocketLike, message_type: str, error: Exception
    ) -> None:
        await ws.send_media({"type": "failed", "payload": {"for": message_type}})


def fragile_app() -> falcon.asgi.App[Any, Any]:
    app: falcon.asgi.App[Any, Any] = falcon.asgi.App()
    falcon_pachinko.install(app)
    app.add_websocket_route("/ws", Fragile)  # type: ignore[attr-defined]
    return app


async def test_a_raising_handler_is_logged_and_the_socket_stays_open() -> None:
    async with serve(fragile_app()) as server, connect(server.ws_url("/ws")) as client:
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                await client.send_json({"type": "explode"})
                assert await client.receive() == {"type": "failed", "payload": {"for": "explode"}}
        await client.send_json({"type": "echo", "payload": {"still": "open"}})
        assert await client.receive() == {"type": "echoed", "payload": {"still": "open"}}
    failures = [e for e in logs if e["event"] == "pachinko.handler_failed"]
    assert len(failures) == 3 and all(e["exc_info"] for e in failures)


async def test_other_connections_are_unaffected_by_a_failing_handler() -> None:
    async with (
        serve(fragile_app()) as server,
        connect(server.ws_url("/ws")) as breaker,
        connect(server.ws_url("/ws")) as bystander,
    ):
        await breaker.send_json({"type": "explode"})
        await breaker.expect("failed")
        await bystander.send_json({"type": "echo", "payload": {"n": 1}})
        assert (await bystander.expect("echoed"))["payload"] == {"n": 1}
