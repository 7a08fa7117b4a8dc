"""Test kit: real uvicorn servers on free ports, real WebSocket clients.

::

    from falcon_pachinko.testing import connect, serve

    async def test_echo(app):
        async with serve(app) as server, connect(server.ws_url("/ws/echo")) as client:
            await client.send_json({"type": "echo", "payload": {"text": "hi"}})
            reply = await client.expect("echoed")

For pytest, ``pytest_plugins = ["falcon_pachinko.testing.plugin"]`` provides the
``pachinko_serve`` and ``pachinko_connect`` fixtures, which clean up after the test.

Every wait is bounded. Bounds are multiplied by ``PACHINKO_TEST_TIMEOUT_FACTOR``
(default 1) so a slow machine can stretch them without editing tests.

Needs the ``testing`` extra: ``pip install falcon-pachinko[testing]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import msgspec
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..close_codes import CloseCode
from ..uvicorn_ws import WebSocketProtocol

__all__ = [
    "LiveServer",
    "WSClient",
    "connect",
    "handshake_status",
    "scaled",
    "serve",
]

DEFAULT_TIMEOUT_S = 5.0


def scaled(seconds: float) -> float:
    """Scale a test bound by ``PACHINKO_TEST_TIMEOUT_FACTOR``."""
    return seconds * float(os.environ.get("PACHINKO_TEST_TIMEOUT_FACTOR", "1"))


class _Server(uvicorn.Server):
    """uvicorn's server, without signal handling, reporting when startup ends."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = asyncio.Event()
        self.startup_failed = False

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:
            # uvicorn exits the process when lifespan startup fails.
            self.startup_failed = True
            self.should_exit = True
        finally:
            self.startup_done.set()


class LiveServer:
    """A running server. ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"

    def ws_url(self, path: str, query: Mapping[str, str] | None = None, **params: str) -> str:
        """The ``ws://`` URL of ``path`` with ``params`` as its query string."""
        merged = {**(query or {}), **params}
        suffix = f"?{urlencode(merged)}" if merged else ""
        return f"ws://{self.host}:{self.port}{path}{suffix}"


@contextlib.asynccontextmanager
async def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout_s: float = DEFAULT_TIMEOUT_S,
    shutdown_timeout_s: float = DEFAULT_TIMEOUT_S,
    **config: Any,
) -> AsyncIterator[LiveServer]:
    """Serve ``app`` with uvicorn on ``host``, lifespan on.

    Args:
        app: The ASGI app.
        host: Address to bind; loopback by default.
        port: Port to bind; a free one when 0. A fixed port brings a server back
            where clients expect it, as a restart would.
        startup_timeout_s: Bound on startup (scaled).
        shutdown_timeout_s: Bound on graceful shutdown (scaled).
        **config: Extra ``uvicorn.Config`` options (``ws_max_size``...).

    Raises:
        RuntimeError: The app's lifespan startup failed.
        TimeoutError: Startup did not finish in time.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {
        "lifespan": "on",
        "log_config": None,
        "ws": WebSocketProtocol,
        "ws_per_message_deflate": False,
    }
    options.update(config)
    server = _Server(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]), name="pachinko-test-server")
    try:
        async with asyncio.timeout(scaled(startup_timeout_s)):
            await server.startup_done.wait()
        if server.startup_failed or not server.started:
            raise RuntimeError("the app failed to start (lifespan startup failed)")
        yield LiveServer(host, port)
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(scaled(shutdown_timeout_s)):
                await asyncio.shield(task)
        except TimeoutError:
            server.force_exit = True
            await task
        finally:
            sock.close()


class WSClient:
    """A real WebSocket client with helpers for JSON messages that have a ``type``.

    Attributes:
        received: Every message received so far, in order (decoded JSON, or the raw
            frame when it is not JSON).
    """

    def __init__(self, conn: ClientConnection, timeout_s: float) -> None:
        self.conn = conn
        self.timeout_s = timeout_s
        self.received: list[Any] = []
        self._unread: list[Any] = []

    async def send_json(self, message: object) -> None:
        """Send ``message`` encoded as a JSON text frame."""
        await self.conn.send(msgspec.json.encode(message).decode())

    async def send_raw(self, frame: str | bytes) -> None:
        """Send a text (``str``) or binary (``bytes``) frame as is."""
        await self.conn.send(frame)

    async def receive(self, timeout_s: float | None = None) -> Any:
        """The next message, in arrival order, including ones :meth:`expect` skipped.

        Raises:
            TimeoutError: Nothing arrived within the (scaled) timeout.
            websockets.exceptions.ConnectionClosed: The connection closed.
        """
        if self._unread:
            return self._unread.pop(0)
        return await self._read(timeout_s)

    async def expect(self, message_type: str, timeout_s: float | None = None) -> dict[str, Any]:
        """The next message whose ``type`` is ``message_type``.

        Messages of other types read meanwhile stay available to :meth:`receive`.

        Raises:
            TimeoutError: No such message within the (scaled) timeout; the message
                says which types did arrive.
        """
        for i, message in enumerate(self._unread):
            if _type_of(message) == message_type:
                return self._unread.pop(i)  # type: ignore[no-any-return]
        deadline = scaled(timeout_s if timeout_s is not None else self.timeout_s)
        try:
            async with asyncio.timeout(deadline):
                while True:
                    message = await self._read(None, bounded=False)
                    if _type_of(message) == message_type:
                        return message  # type: ignore[no-any-return]
                    self._unread.append(message)
        except TimeoutError:
            seen = [_type_of(m) for m in self._unread]
            raise TimeoutError(
                f"no {message_type!r} message within {deadline:.1f}s; unread: {seen}"
            ) from None

    async def expect_close(self, timeout_s: float | None = None) -> int | None:
        """Wait for the server to close the connection; return its close code.

        Messages that arrive first are kept in :attr:`received`.
        """
        deadline = scaled(timeout_s if timeout_s is not None else self.timeout_s)
        async with asyncio.timeout(deadline):
            with contextlib.suppress(ConnectionClosed):
                while True:
                    self._unread.append(await self._read(None, bounded=False))
            await self.conn.wait_closed()
        return self.conn.close_code

    async def close(self, code: int = CloseCode.NORMAL) -> None:
        """Close the connection and wait for the closing handshake."""
        await self.conn.close(code)

    async def _read(self, timeout_s: float | None, *, bounded: bool = True) -> Any:
        if bounded:
            deadline = scaled(timeout_s if timeout_s is not None else self.timeout_s)
            async with asyncio.timeout(deadline):
                frame = await self.conn.recv()
        else:
            frame = await self.conn.recv()
        try:
            message: Any = msgspec.json.decode(frame)
        except msgspec.DecodeError:
            message = frame
        self.received.append(message)
        return message


def _type_of(message: Any) -> Any:
    return message.get("type") if isinstance(message, dict) else None


@contextlib.asynccontextmanager
async def connect(
    url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, **options: Any
) -> AsyncIterator[WSClient]:
    """Open a WebSocket client to ``url``; close it on exit.

    Args:
        url: A ``ws://`` URL (see :meth:`LiveServer.ws_url`).
        timeout_s: Default bound (scaled) for the client's waits.
        **options: Passed to ``websockets.asyncio.client.connect``. Unlike
            websockets' default, ``max_queue`` is unbounded.

    Raises:
        websockets.exceptions.InvalidStatus: The server rejected the handshake.
    """
    options.setdefault("open_timeout", scaled(timeout_s))
    options.setdefault("close_timeout", scaled(timeout_s))
    options.setdefault("compression", None)
    # websockets stops reading the socket once 16 frames wait unread, and then
    # cannot see the server's close frame: a test client that ignores traffic
    # would spend close_timeout on every close. Buffer everything instead; a test
    # that models a slow reader passes max_queue itself.
    options.setdefault("max_queue", None)
    async with websockets.connect(url, **options) as conn:
        yield WSClient(conn, timeout_s)


async def handshake_status(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """Attempt a handshake and return the HTTP status (101 when accepted)."""
    try:
        async with websockets.connect(url, open_timeout=scaled(timeout_s)):
            return 101
    except InvalidStatus as exc:
        return int(exc.response.status_code)
