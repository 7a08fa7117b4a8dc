"""The chat gateway's own app (memory backend, history on) on picows, through a thin ASGI bridge.

An experiment, not a server to deploy: it measures what serving the library on a
faster WebSocket implementation would gain. picows (Cython) parses and frames;
each connection's ASGI scope carries a :class:`~falcon_pachinko.wire.FrameSink`
on picows' transport, so room traffic is written exactly as under the library's
uvicorn protocol (one frame's bytes for every recipient, no task switch, one
write per connection per event-loop turn). What it leaves out: picows answers the
upgrade before the app runs, so a handshake the app refuses is accepted and then
closed (1008) instead of refused with an HTTP status; there are no HTTP routes;
fragmented messages are not reassembled. The benchmark's load needs none of it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import deque
from typing import Any, Final

import uvloop
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from benchmarks.fanout import base_gateway_env
from chat_gateway.app import create_app
from chat_gateway.settings import load_settings
from falcon_pachinko.wire import EXTENSION

from ._chat import announce, arguments, listening_socket

_HIGH_WATER: Final = 64 * 1024
_NO_STATUS: Final = 1005
_ABNORMAL: Final = 1006
_POLICY: Final = 1008


class _Flusher:
    """One write per connection per event-loop turn, as the uvicorn protocol does."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: list[_Sink] = []

    def due(self, sink: _Sink) -> None:
        if not self._due:
            self._loop.call_soon(self._flush)
        self._due.append(sink)

    def _flush(self) -> None:
        due, self._due = self._due, []
        for sink in due:
            sink.flush()


class _Sink:
    """A :class:`~falcon_pachinko.wire.FrameSink` on a picows transport."""

    __slots__ = ("_bridge", "_flusher", "_pending", "_raw")

    def __init__(self, bridge: _Bridge, transport: WSTransport, flusher: _Flusher) -> None:
        self._bridge = bridge
        self._raw = transport.underlying_transport
        self._flusher = flusher
        self._pending: list[bytes] | None = None

    def writable(self) -> bool:
        b = self._bridge
        return (
            b.accepted
            and not b.closed
            and not self._raw.is_closing()
            and self._raw.get_write_buffer_size() < _HIGH_WATER
        )

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._flusher.due(self)
        else:
            self._pending.append(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._bridge.closed and not self._raw.is_closing():
            self._raw.write(pending[0] if len(pending) == 1 else b"".join(pending))

    async def drained(self) -> None:
        while not self._bridge.closed and not self.writable():
            await asyncio.sleep(0.005)


class _Bridge(WSListener):
    """One WebSocket connection as an ASGI ``websocket`` scope."""

    def __init__(self, app: Any, request: WSUpgradeRequest, flusher: _Flusher) -> None:
        raw_path = bytes(request.path)
        path, _, query = raw_path.partition(b"?")
        self.app = app
        self.flusher = flusher
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in request.headers.items()
            ],
            "client": None,
            "server": None,
            "subprotocols": [],
            "extensions": {},
        }
        self.inbox: deque[dict[str, Any]] = deque([{"type": "websocket.connect"}])
        self.arrived = asyncio.Event()
        self.arrived.set()
        self.transport: WSTransport | None = None
        self.sink: _Sink | None = None
        self.accepted = False
        self.closed = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.sink = _Sink(self, transport, self.flusher)
        self.scope["extensions"][EXTENSION] = self.sink
        asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        finally:
            if not self.closed and self.transport is not None:
                self._close(_POLICY if not self.accepted else 1000)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            self._arrive({"type": "websocket.receive", "text": frame.get_payload_as_utf8_text()})
        elif kind == WSMsgType.BINARY:
            self._arrive({"type": "websocket.receive", "bytes": frame.get_payload_as_bytes()})
        elif kind == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind == WSMsgType.CLOSE:
            code = int(frame.get_close_code().value or _NO_STATUS)
            self._close(code if code != _NO_STATUS else 1000)
            self._arrive({"type": "websocket.disconnect", "code": code})

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed:
            self.closed = True
            self._arrive({"type": "websocket.disconnect", "code": _ABNORMAL})

    def _arrive(self, event: dict[str, Any]) -> None:
        self.inbox.append(event)
        self.arrived.set()

    async def receive(self) -> dict[str, Any]:
        while not self.inbox:
            self.arrived.clear()
            await self.arrived.wait()
        return self.inbox.popleft()

    async def send(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if self.closed or self.transport is None:
            return
        if self.sink is not None:
            self.sink.flush()  # what the library wrote goes first
        if kind == "websocket.accept":
            self.accepted = True
        elif kind == "websocket.send":
            text = event.get("text")
            if text is not None:
                self.transport.send(WSMsgType.TEXT, text.encode())
            else:
                self.transport.send(WSMsgType.BINARY, event.get("bytes") or b"")
        elif kind == "websocket.close":
            code = int(event.get("code", 1000)) if self.accepted else _POLICY
            self._close(code, event.get("reason") or "")
        elif kind == "websocket.http.response.start":
            self._close(_POLICY)  # a refusal: the upgrade was already answered

    def _close(self, code: int, reason: str = "") -> None:
        if self.closed or self.transport is None:
            return
        self.closed = True
        if self.sink is not None:
            self.sink.flush()
        self.transport.send_close(WSCloseCode(code), reason.encode())
        self.transport.disconnect(graceful=True)


async def _lifespan(app: Any) -> asyncio.Queue[dict[str, Any]]:
    """Run the app's ASGI lifespan startup; the queue that later asks for shutdown."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.get_running_loop().create_future()

    async def send(event: dict[str, Any]) -> None:
        if event["type"] == "lifespan.startup.complete":
            started.set_result(None)
        elif event["type"] == "lifespan.startup.failed":
            started.set_exception(RuntimeError(event.get("message", "startup failed")))

    inbox.put_nowait({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": {}}
    asyncio.get_running_loop().create_task(app(scope, inbox.get, send))
    await started
    return inbox


async def main() -> None:
    args = arguments(__doc__.split("\n", 1)[0])
    for name, value in base_gateway_env("memory").items():
        os.environ.setdefault(name, value)
    app = create_app(load_settings(os.environ))
    await _lifespan(app)
    loop = asyncio.get_running_loop()
    flusher = _Flusher(loop)
    sock = listening_socket(args.host, args.port)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    server = await ws_create_server(lambda request: _Bridge(app, request, flusher), sock=sock)
    announce(sock.getsockname()[1])
    await stop
    server.close()


if __name__ == "__main__":
    uvloop.run(main())
