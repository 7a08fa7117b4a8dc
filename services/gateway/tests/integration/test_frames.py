"""The wire below the chat: frame limits, RFC 6455 violations, slow handshakes, pings.

Every test runs the gateway with its production uvicorn options and talks raw
bytes to it (:mod:`.rawws`), because well-behaved clients cannot send what these
tests need.
"""

from __future__ import annotations

import asyncio
import struct
import time

import msgspec
import pytest
import structlog

from falcon_pachinko.testing import connect, scaled

from .conftest import StartGateway
from .rawws import (
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    RawWebSocket,
    encode_frame,
)

pytestmark = pytest.mark.integration

MAX_BYTES = 65536  # CHAT_WS_MAX_BYTES's default


def send_text(text: str) -> bytes:
    message = {"type": "clientSendMessage", "payload": {"text": text}}
    return encode_frame(OP_TEXT, msgspec.json.encode(message))


async def joined(port: int, user: str, room: str = "general") -> RawWebSocket:
    client = await RawWebSocket.open(port, f"/ws/chat/{room}?user={user}")
    assert client.status == 101, client.status
    for expected in (b"serverSystemMessage", b"serverPresence", b"serverHistory"):
        assert expected in (await client.read_frame()).payload
    return client


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(encode_frame(OP_TEXT, b'{"type":"x"}', mask=False), 1002, id="unmasked-1002"),
        pytest.param(encode_frame(OP_TEXT, b"{}", rsv=0b100), 1002, id="reserved-bit-1002"),
        pytest.param(encode_frame(OP_PING, b"x" * 126), 1002, id="control-over-125-1002"),
        pytest.param(encode_frame(OP_PING, b"", fin=False), 1002, id="fragmented-control-1002"),
        pytest.param(encode_frame(0x3, b""), 1002, id="reserved-opcode-1002"),
        pytest.param(encode_frame(OP_CLOSE, struct.pack("!H", 999)), 1002, id="close-999-1002"),
        pytest.param(encode_frame(OP_CLOSE, struct.pack("!H", 1005)), 1002, id="close-1005-1002"),
        pytest.param(encode_frame(OP_CLOSE, b"\x03"), 1002, id="close-1-byte-1002"),
        pytest.param(encode_frame(OP_TEXT, b'{"a":"\xff\xfe"}'), 1007, id="invalid-utf8-1007"),
        pytest.param(
            encode_frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007, id="close-reason-1007"
        ),
    ],
)
async def test_rfc_6455_violations_get_their_close_codes(
    start_gateway: StartGateway, frame: bytes, code: int
) -> None:
    server = await start_gateway()
    client = await joined(server.port, "Mallory")
    await client.send(frame)
    assert await client.close_code() == code
    # The gateway is unharmed: the next client chats.
    async with connect(server.ws_url("/ws/chat/general", {"user": "Ann"})) as ann:
        await ann.expect("serverPresence")


@pytest.mark.parametrize(
    ("extra", "code"),
    [pytest.param(0, None, id="max-passes"), pytest.param(1, 1009, id="max+1-closes-1009")],
)
async def test_fragments_are_limited_like_one_frame(
    start_gateway: StartGateway, extra: int, code: int | None
) -> None:
    server = await start_gateway()
    client = await joined(server.port, "Frag")
    text = b'{"type":"clientSendMessage","payload":{"text":"' + b"x" * 1000 + b'"}}'
    padding = MAX_BYTES + extra - len(text)
    message = text[:-3] + b" " * padding + text[-3:]  # JSON whitespace pads it exactly
    assert len(message) == MAX_BYTES + extra
    chunks = [message[i : i + 8192] for i in range(0, len(message), 8192)]
    for i, chunk in enumerate(chunks):
        opcode = OP_TEXT if i == 0 else OP_CONTINUATION
        await client.send(encode_frame(opcode, chunk, fin=i == len(chunks) - 1))
    if code is not None:
        assert await client.close_code() == code
        return
    # Within the limit: an ordinary message (the text is too long for the chat).
    answer = msgspec.json.decode((await client.read_frame()).payload)
    assert answer["type"] == "serverError"


async def test_a_huge_declared_length_is_refused_before_any_payload(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway()
    client = await joined(server.port, "Liar")
    # A header claiming 2**62 bytes, and not one byte of payload behind it.
    await client.send(encode_frame(OP_TEXT, b"", declared_length=1 << 62))
    assert await client.close_code() == 1009


async def test_permessage_deflate_is_not_negotiated(start_gateway: StartGateway) -> None:
    server = await start_gateway()
    offer = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    client = await RawWebSocket.open(server.port, "/ws/chat/general?user=Zip", extra_headers=offer)
    assert client.status == 101
    # No extension: a compressed frame (RSV1) is then a protocol error, so no
    # decompression bomb can be fed in.
    assert "sec-websocket-extensions" not in client.headers
    await client.read_frame()
    await client.send(encode_frame(OP_TEXT, b"\xf2H\xcd\xc9\xc9\x07\x00", rsv=0b100))
    assert await client.close_code() == 1002


async def test_trickled_request_headers_are_dropped_before_any_authentication(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway(CHAT_HANDSHAKE_TIMEOUT_S="0.5")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        writer.write(b"GET /ws/chat/general?user=Slow HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()

        async def trickle() -> None:
            for byte in b"X-Slow: " + b"a" * 200:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)  # the attack itself: one byte at a time

        trickler = asyncio.create_task(trickle())
        try:
            async with asyncio.timeout(scaled(5)):
                assert await reader.read() == b""  # the server hung up, unanswered
        finally:
            trickler.cancel()
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < scaled(0.5 + 1.5), f"dropped after {elapsed:.2f}s"
    assert [e["event"] for e in logs if e["event"].startswith("auth")] == []
    assert any(e["event"] == "http.header_timeout" for e in logs)
    writer.close()
    # An ordinary client is served as usual.
    async with connect(server.ws_url("/ws/chat/general", {"user": "Ann"})) as ann:
        await ann.expect("serverPresence")


async def test_a_peer_that_stops_answering_pings_is_dropped_and_leaves(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway(CHAT_WS_PING_INTERVAL_S="0.3", CHAT_WS_PING_TIMEOUT_S="0.3")
    async with connect(server.ws_url("/ws/chat/general", {"user": "Watcher"})) as watcher:
        await watcher.expect("serverPresence")
        silent = await joined(server.port, "Silent")
        await watcher.expect("serverUserJoined")
        started = time.monotonic()
        # Silent reads everything but never answers a ping: the server gives up
        # with 1011 (keepalive ping timeout), or drops the TCP connection.
        try:
            code: int | None = await silent.close_code(timeout_s=5, answer_pings=False)
        except (asyncio.IncompleteReadError, ConnectionError):
            code = None
        assert code in (1011, None)
        left = await watcher.expect("serverUserLeft")
        elapsed = time.monotonic() - started
        assert left["payload"] == {"user": "Silent"}
        assert elapsed < scaled(0.3 + 0.3 + 1.5), f"dropped after {elapsed:.2f}s"


async def test_a_healthy_idle_client_survives_many_ping_cycles(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway(CHAT_WS_PING_INTERVAL_S="0.2", CHAT_WS_PING_TIMEOUT_S="0.2")
    client = await joined(server.port, "Idle")
    pings = 0
    while pings < 5:  # five cycles of ping, pong, silence
        frame = await client.read_frame(timeout_s=3)
        assert frame.opcode == OP_PING, frame
        pings += 1
        await client.send(encode_frame(0xA, frame.payload))
    await client.send(send_text("still here"))
    while (frame := await client.read_frame()).opcode == OP_PING:
        await client.send(encode_frame(0xA, frame.payload))
    assert b"still here" in frame.payload


async def test_a_dropped_slow_request_is_reported_to_the_gateway() -> None:
    from chat_gateway.app import create_app
    from chat_gateway.server import uvicorn_options
    from chat_gateway.settings import load_settings
    from falcon_pachinko.testing import serve

    settings = load_settings(
        {"CHAT_AUTH": "dev", "CHAT_ANNOUNCE_INTERVAL_S": "0", "CHAT_HANDSHAKE_TIMEOUT_S": "0.3"}
    )
    dropped = asyncio.Event()
    options = {**uvicorn_options(settings, dropped.set), "port": 0}
    async with serve(create_app(settings), **options) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\n")  # and nothing more
        await writer.drain()
        async with asyncio.timeout(scaled(3)):
            await dropped.wait()
            assert await reader.read() == b""
        writer.close()
