"""The lent socket over a real uvicorn: what the library writes and what uvicorn writes.

Room traffic written to the socket goes out at the next event-loop turn; a close
frame (uvicorn's) written in the same turn must still come after it, and the
plain-ASGI server must give the same stream.
"""

from __future__ import annotations

from typing import Any

import falcon.asgi
import pytest

import falcon_pachinko
from falcon_pachinko import WebSocketLike, WebSocketResource, handles_message
from falcon_pachinko.testing import connect, serve

pytestmark = pytest.mark.integration

BURST = 200


class Burst(WebSocketResource):
    async def on_connect(self, req: Any, ws: WebSocketLike) -> bool:
        await self.join_room("r")
        return True

    @handles_message("burst")
    async def burst(self, ws: WebSocketLike, payload: dict[str, Any]) -> None:
        for n in range(BURST):
            await self.broadcast_to_room("r", {"type": "n", "payload": n})
        await ws.close(4100, "done")  # the same turn as the last frames


def burst_app() -> falcon.asgi.App[Any, Any]:
    app: falcon.asgi.App[Any, Any] = falcon.asgi.App()
    falcon_pachinko.install(app)
    app.add_websocket_route("/ws", Burst)  # type: ignore[attr-defined]
    return app


@pytest.mark.parametrize("ws", ["pachinko", "websockets-sansio"])
async def test_a_close_after_room_traffic_arrives_after_all_of_it(ws: str) -> None:
    options = {} if ws == "pachinko" else {"ws": ws}
    async with serve(burst_app(), **options) as server:
        async with connect(server.ws_url("/ws")) as sender, connect(server.ws_url("/ws")) as other:
            await sender.send_json({"type": "burst"})
            got = [(await other.receive())["payload"] for _ in range(BURST)]
            assert got == list(range(BURST))
            mine = [(await sender.receive())["payload"] for _ in range(BURST)]
            assert mine == list(range(BURST))
            assert await sender.expect_close() == 4100
