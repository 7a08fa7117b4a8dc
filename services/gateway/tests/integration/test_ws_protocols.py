"""Every WebSocket implementation the gateway can run under (``CHAT_WS_PROTOCOL``).

``pachinko`` lends the sockets to the library (room traffic written straight to
the transport, framed once per message); the others are uvicorn's own, through
plain ASGI. The chat must behave the same on each: history, live traffic, the
exclusions, the close codes.
"""

from __future__ import annotations

import pytest

from falcon_pachinko.testing import connect

from .conftest import StartGateway
from .test_history import joined, say, send, url

pytestmark = pytest.mark.integration

PROTOCOLS = ["pachinko", "websockets-sansio", "websockets", "wsproto"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_chat_is_the_same_on_every_websocket_implementation(
    start_gateway: StartGateway, protocol: str
) -> None:
    if protocol == "wsproto":
        pytest.importorskip("wsproto")
    server = await start_gateway(CHAT_WS_PROTOCOL=protocol, CHAT_WS_MAX_BYTES="16384")
    async with connect(url(server, "Ann")) as ann:
        await joined(ann)
        (hello,) = await say(ann, "hello")
        async with connect(url(server, "Bob")) as bob:
            history = await joined(bob)
            assert history["messages"] == [hello]
            await ann.send_json(send("é" * 1500))  # a frame past 125 bytes and non-ASCII
            big = (await bob.expect("serverNewMessage"))["payload"]
            assert big["text"] == "é" * 1500 and big["seq"] > hello["seq"]
            await bob.send_json({"type": "clientStartTyping", "payload": {}})
            typing = await ann.expect("serverUserTyping")
            assert typing["payload"]["user"] == "Bob"
            await ann.send_raw("x" * 17000)  # over CHAT_WS_MAX_BYTES
            assert await ann.expect_close() == 1009
        async with connect(url(server, "Cy")) as cy:  # the server goes on
            assert (await cy.receive())["type"] == "serverSystemMessage"
