"""The uvicorn protocol that lends its sockets: ordering against uvicorn's own writes."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Close, Frame, Opcode

from falcon_pachinko.testing import scaled
from falcon_pachinko.uvicorn_ws import WebSocketProtocol
from falcon_pachinko.wire import EXTENSION, server_frame

BOUND_S = scaled(1.0)

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closing:
            self.out += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def lent() -> tuple[WebSocketProtocol, Transport, Any]:
    sinks: asyncio.Queue[Any] = asyncio.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        sinks.put_nowait(scope["extensions"][EXTENSION])
        while (await receive())["type"] != "websocket.disconnect":
            pass

    config = Config(app, ws_per_message_deflate=False, log_config=None, lifespan="off")
    config.load()
    protocol = WebSocketProtocol(config, ServerState(), {}, _loop=asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    async with asyncio.timeout(BOUND_S):
        sink = await sinks.get()
    return protocol, transport, sink


def client_close(code: int = 1000) -> bytes:
    frame = Frame(Opcode.CLOSE, Close(code, "").serialize())
    return frame.serialize(mask=True, extensions=[])


async def test_frames_written_before_the_peer_closes_go_out_before_the_close_echo() -> None:
    protocol, transport, sink = await lent()
    start = len(transport.out)
    sink.write(server_frame(b'"room"'))  # this turn's fan-out, not flushed yet
    protocol.data_received(client_close())  # uvicorn echoes the close now
    await asyncio.sleep(0)  # the turn's flush
    wire = bytes(transport.out[start:])
    assert wire.index(b'"room"') < wire.index(b"\x88"), wire
    assert not sink.writable()
    sink.write(server_frame(b'"late"'))  # after the close: never on the wire
    await asyncio.sleep(0)
    assert b'"late"' not in transport.out


async def test_a_turn_of_frames_past_the_high_water_mark_goes_to_the_transport_at_once() -> None:
    protocol, transport, sink = await lent()
    start = len(transport.out)
    frame = server_frame(b"x" * 1000)
    for _ in range(80):  # 80 KB in one turn
        sink.write(frame)
    assert len(transport.out) - start >= 64 * 1024  # flushed without waiting for the turn
    protocol.connection_lost(None)


def test_a_loop_that_served_connections_is_not_kept_alive() -> None:
    import gc

    from falcon_pachinko import uvicorn_ws

    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def use() -> None:
        loop = asyncio.get_running_loop()
        uvicorn_ws._flusher_of(loop)
        loops.append(weakref.ref(loop))

    for _ in range(3):
        asyncio.run(use())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]


async def test_one_failing_flush_strands_no_other_connection() -> None:
    from falcon_pachinko.uvicorn_ws import _Flusher

    flushed: list[str] = []

    class Broken:
        def flush(self) -> None:
            raise RuntimeError("transport is gone")

    class Fine:
        def flush(self) -> None:
            flushed.append("fine")

    flusher = _Flusher()
    flusher._due = [Broken(), Fine()]  # type: ignore[list-item]
    flusher._flush()
    assert flushed == ["fine"] and flusher._due == []


# -- what an idle connection holds ------------------------------------------------


async def test_after_the_accept_the_handshake_request_holds_no_headers() -> None:
    protocol, transport, sink = await lent()
    assert not hasattr(protocol, "request") and not hasattr(protocol, "response")
    # websockets' parser keeps the request in its suspended frame: it is emptied.
    frame = protocol.conn.parser.gi_frame
    assert frame is not None
    request = frame.f_locals["request"]
    assert list(request.headers.raw_items()) == []
    # The ASGI scope keeps its own copy, for the application.
    assert (b"Upgrade", b"websocket") in protocol.scope["headers"]
    protocol.connection_lost(None)


async def test_the_receive_queue_and_the_writable_flag_are_uvicorns_in_behaviour() -> None:
    protocol, transport, sink = await lent()
    assert not isinstance(protocol.queue, asyncio.Queue)
    assert not isinstance(protocol.writable, asyncio.Event)
    # Backpressure still pauses the sink and the library's wait for it.
    protocol.pause_writing()
    assert not sink.writable() and not protocol.writable.is_set()
    drained = asyncio.ensure_future(sink.drained())
    await asyncio.sleep(0)
    assert not drained.done()
    protocol.resume_writing()
    async with asyncio.timeout(BOUND_S):
        await drained
    assert sink.writable()
    # A disconnect reaches the application through the queue.
    protocol.connection_lost(None)
    assert protocol.queue.qsize() == 1


async def test_the_inbox_keeps_order_and_a_cancelled_getter_loses_no_item() -> None:
    from falcon_pachinko.uvicorn_ws import _Inbox

    inbox: _Inbox[int] = _Inbox()
    assert inbox.empty()
    first = asyncio.ensure_future(inbox.get())
    second = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait(1)  # wakes the first getter ...
    first.cancel()  # ... which is cancelled before it runs: the item is the second's
    async with asyncio.timeout(BOUND_S):
        assert await second == 1
    assert first.cancelled() and inbox.empty()
    for item in (2, 3, 4):
        inbox.put_nowait(item)
    assert [await inbox.get() for _ in range(3)] == [2, 3, 4]
    assert inbox.qsize() == 0


async def test_the_flag_wakes_every_waiter_once_set() -> None:
    from falcon_pachinko.uvicorn_ws import _Flag

    flag = _Flag()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    cancelled = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    async with asyncio.timeout(BOUND_S):
        assert await asyncio.gather(*waiters) == [True, True, True]
    flag.clear()
    assert not flag.is_set()
    flag.set()
    assert await flag.wait() is True


async def test_a_connection_lets_its_writer_go_once_its_queue_has_drained() -> None:
    from falcon_pachinko import Connection, ConnectionLimits

    class Raw:  # what Connection calls on Falcon's WebSocket before the accept
        subprotocols = ()

        async def accept(self, subprotocol: str | None = None) -> None:
            pass

    protocol, transport, sink = await lent()
    conn = Connection(Raw(), ConnectionLimits(), wire=sink)  # type: ignore[arg-type]
    await conn.send_text("early")  # held until the accept: the writer writes it
    await conn.accept()
    writer = conn._writer
    assert writer is not None
    async with asyncio.timeout(BOUND_S):
        await writer
    assert conn._writer is None  # a done task holds its coroutine: not kept
    # Later traffic still goes out, in order, written at once or by a new writer.
    protocol.pause_writing()
    assert conn.offer_text("queued")
    assert conn._writer is not None
    protocol.resume_writing()
    async with asyncio.timeout(BOUND_S):
        while conn._writer is not None or conn.session.backlog:
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # the turn's flush
    wire = bytes(transport.out)
    assert wire.index(b"early") < wire.index(b"queued")
    protocol.connection_lost(None)
    conn.mark_closed(1006)
    await conn.finish()


# What WebSocketProtocol overrides or reads of uvicorn's protocol, none of it public
# API: an upgrade of uvicorn that renames one fails here, not in production.
UVICORN_METHODS = (
    "handle_connect",
    "send",
    "data_received",
    "pause_writing",
    "resume_writing",
    "send_keepalive_ping",
    "keepalive_timeout",
    "shutdown",
    "connection_lost",
)
UVICORN_STATE = {
    "handshake_complete": bool,
    "close_sent": bool,
    "disconnected": bool,
    "transport": asyncio.Transport,
    "loop": asyncio.AbstractEventLoop,
    "scope": dict,
}


async def test_the_uvicorn_internals_it_builds_on_are_there() -> None:
    base = WebSocketProtocol.__mro__[1]
    for name in UVICORN_METHODS:
        assert callable(getattr(base, name, None)), f"uvicorn's protocol has no {name}()"
        assert name in vars(WebSocketProtocol), f"{name} is not overridden"
    protocol, _, _ = await lent()
    for name, kind in UVICORN_STATE.items():
        assert isinstance(getattr(protocol, name, None), kind), f"uvicorn's protocol.{name}"
    assert protocol.initial_response is None
    # What uvicorn calls on the two it gets in place of its own queue and event.
    for name in ("put_nowait", "get", "empty"):
        assert callable(getattr(protocol.queue, name, None)), f"queue.{name}"
    for name in ("set", "clear", "is_set", "wait"):
        assert callable(getattr(protocol.writable, name, None)), f"writable.{name}"
    protocol.connection_lost(None)
