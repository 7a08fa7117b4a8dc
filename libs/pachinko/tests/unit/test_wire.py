"""Frames built once and written straight to a lent socket (the fast path)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from falcon_pachinko import CloseCode, Connection, ConnectionLimits
from falcon_pachinko.session import Send
from falcon_pachinko.testing import scaled
from falcon_pachinko.wire import server_frame

BOUND_S = scaled(0.5)


def parse(data: bytes) -> list[Frame]:
    """Frames as a client parses them (RFC 6455, unmasked from a server)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        gen: Generator[Any, None, Frame] = Frame.parse(reader.read_exact, mask=False)
        try:
            while True:
                next(gen)
        except StopIteration as done:
            frames.append(done.value)
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_server_frame_is_what_a_client_parses(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    (text,) = parse(server_frame(payload))
    assert (text.opcode, text.fin, text.data) == (Opcode.TEXT, True, payload)
    (binary,) = parse(server_frame(payload, text=False))
    assert (binary.opcode, binary.data) == (Opcode.BINARY, payload)


def test_a_frame_is_encoded_once_and_its_text_decoded_once() -> None:
    frame = Send.of_checked_utf8("héllo".encode())
    assert frame is not None
    assert frame.wire is frame.wire and frame.as_text() is frame.as_text()
    assert Send.of_checked_utf8(b"\xff") is None


class Sink:
    """A lent socket: records writes; ``open`` and ``room`` say what it takes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.room = asyncio.Event()
        self.room.set()
        self.open = True

    def writable(self) -> bool:
        return self.open and self.room.is_set()

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def flush(self) -> None:
        pass

    async def drained(self) -> None:
        await self.room.wait()

    def texts(self) -> list[str]:
        return [f.data.decode() for data in self.writes for f in parse(data)]


class Raw:
    """The falcon WebSocket beneath: only the accept and the close go through it."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.closes: list[int] = []
        self.subprotocols = ()

    async def accept(self, subprotocol: str | None = None) -> None:
        pass

    async def send_text(self, payload: str) -> None:
        self.texts.append(payload)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closes.append(code)


async def opened(**limits: Any) -> tuple[Connection, Sink, Raw]:
    sink, raw = Sink(), Raw()
    conn = Connection(raw, ConnectionLimits(**limits), wire=sink)  # type: ignore[arg-type]
    await conn.accept()
    return conn, sink, raw


async def settle(predicate: Any) -> None:
    async with asyncio.timeout(BOUND_S):
        while not predicate():
            await asyncio.sleep(0)


async def test_room_traffic_is_written_at_once_when_nothing_waits() -> None:
    conn, sink, raw = await opened()
    frame = Send.of_text("one")
    assert conn.offer(frame)
    assert sink.writes == [frame.wire]  # synchronously: no writer task involved
    assert conn.session.backlog == 0 and raw.texts == []
    conn.abort(CloseCode.GOING_AWAY)
    await conn.finish()


async def test_a_full_socket_queues_and_the_queue_goes_out_in_one_write_in_order() -> None:
    conn, sink, _ = await opened()
    sink.room.clear()  # the transport is above its high-water mark
    for text in ("a", "b", "c"):
        assert conn.offer(Send.of_text(text))
    assert sink.writes == [] and conn.session.backlog == 3
    sink.room.set()
    assert conn.offer(Send.of_text("d"))  # something waits: it queues behind
    await settle(lambda: conn.session.backlog == 0)
    assert sink.texts() == ["a", "b", "c", "d"]
    assert len(sink.writes) == 1  # coalesced
    conn.abort(CloseCode.GOING_AWAY)
    await conn.finish()


async def test_a_socket_that_stays_full_is_still_a_slow_consumer() -> None:
    conn, sink, raw = await opened(max_queue_messages=2)
    sink.room.clear()
    assert conn.offer(Send.of_text("a")) and conn.offer(Send.of_text("b"))
    assert not conn.offer(Send.of_text("c"))
    await settle(lambda: bool(raw.closes))
    assert raw.closes == [CloseCode.SLOW_CONSUMER] and sink.writes == []
    sink.room.set()
    await conn.finish()


async def test_direct_sends_take_the_queue_and_the_wire_and_close_goes_through_asgi() -> None:
    conn, sink, raw = await opened()
    await conn.send_media({"type": "welcome"})
    await settle(lambda: bool(sink.writes))
    assert sink.texts() == ['{"type":"welcome"}'] and raw.texts == []
    await conn.close(4100, "bye")
    await conn.finish()
    assert raw.closes == [4100]


async def test_a_socket_the_server_no_longer_lends_falls_back_to_asgi() -> None:
    conn, sink, raw = await opened()
    sink.open = False  # closing underneath: the ASGI send is the one that knows
    assert conn.offer(Send.of_text("late"))
    await settle(lambda: bool(raw.texts))
    assert raw.texts == ["late"] and sink.writes == []
    conn.abort(CloseCode.GOING_AWAY)
    await conn.finish()
