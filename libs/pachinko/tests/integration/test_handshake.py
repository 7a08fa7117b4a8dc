"""Refusing handshakes with the right HTTP status, over real uvicorn and real clients."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
import pytest
import websockets
from websockets.exceptions import InvalidStatus

import falcon_pachinko
from falcon_pachinko import BackendError, WebSocketLike, WebSocketResource
from falcon_pachinko.testing import connect, scaled, serve

pytestmark = pytest.mark.integration


class Gate(WebSocketResource):
    """Refuses or accepts according to the path: /ws/<verdict>."""

    disconnects: list[int] = []

    async def on_connect(self, req: Any, ws: WebSocketLike, verdict: str) -> bool:
        if verdict == "busy":
            raise falcon.HTTPServiceUnavailable(retry_after=7)
        if verdict == "unavailable":
            raise BackendError("NATS is away")
        if verdict == "teapot":
            raise falcon.HTTPError(falcon.HTTP_429)
        if verdict == "bug":
            raise RuntimeError("a bug in on_connect")
        await ws.send_media({"type": "welcome"})
        return verdict == "welcome"

    async def on_disconnect(self, ws: WebSocketLike, close_code: int) -> None:
        self.disconnects.append(close_code)


def gate_app() -> falcon.asgi.App[Any, Any]:
    app: falcon.asgi.App[Any, Any] = falcon.asgi.App()
    falcon_pachinko.install(app)
    app.add_websocket_route("/ws/{verdict}", Gate)  # type: ignore[attr-defined]
    return app


async def refusal(url: str) -> tuple[int, Any]:
    with pytest.raises(InvalidStatus) as caught:
        async with websockets.connect(url, open_timeout=scaled(5)):
            pass
    response = caught.value.response
    return response.status_code, response.headers


@pytest.mark.parametrize(
    ("verdict", "status", "retry_after"),
    [
        pytest.param("no", 403, None, id="returned-false-403"),
        pytest.param("bug", 403, None, id="raised-403"),
        pytest.param("unavailable", 503, "1", id="backend-error-503"),
        pytest.param("busy", 503, "7", id="http-error-its-status"),
        pytest.param("teapot", 429, None, id="any-http-error"),
    ],
)
async def test_a_refusal_has_the_status_it_means(
    verdict: str, status: int, retry_after: str | None
) -> None:
    Gate.disconnects.clear()
    async with serve(gate_app()) as server:
        code, headers = await refusal(server.ws_url(f"/ws/{verdict}"))
        assert code == status
        assert headers.get("Retry-After") == retry_after
        # The server is unharmed: the next client is served.
        async with connect(server.ws_url("/ws/welcome")) as client:
            assert (await client.receive())["type"] == "welcome"
    assert Gate.disconnects == [1000]  # only the accepted one ever disconnected
