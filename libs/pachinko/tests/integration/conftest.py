"""A small cluster for the NATS tests: a real nats-server, nodes, a directory.

A *node* is a ``WebSocketConnectionManager`` on a ``NatsBackend``, holding real
``Connection`` objects over in-memory sockets (:class:`FakeSocket`), so room traffic
goes through the same queues and writer tasks as in production. Tests receive
everything through the ``cluster`` fixture (``--import-mode=importlib`` keeps
test modules from importing this one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from nats.aio.client import Client

from falcon_pachinko import Connection, ConnectionLimits, WebSocketConnectionManager
from falcon_pachinko.backends.nats import NatsBackend
from falcon_pachinko.directory import Directory
from falcon_pachinko.registry import Lost
from falcon_pachinko.subjects import Subjects
from falcon_pachinko.testing import scaled
from falcon_pachinko.testing.nats import NatsServer, nats_server

T = TypeVar("T")

#: Bound on anything that should happen promptly over a local nats-server.
BOUND_S = scaled(3.0)
#: Fast reconnects keep the restart tests short.
RECONNECT_WAIT_S = 0.1


class FakeSocket:
    """In-memory stand-in for the ``falcon.asgi.WebSocket`` a ``Connection`` wraps.

    ``log`` records what reached the client, in order.
    """

    def __init__(self) -> None:
        self.subprotocols: tuple[str, ...] = ()
        self.log: list[tuple[Any, ...]] = []
        self._changed = asyncio.Event()

    async def accept(self, subprotocol: str | None = None) -> None:
        self._record(("accept", subprotocol))

    async def send_text(self, payload: str) -> None:
        self._record(("text", payload))

    async def send_data(self, payload: bytes) -> None:
        self._record(("data", payload))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self._record(("close", code, reason))

    @property
    def texts(self) -> list[str]:
        """Text frames the client received, in order."""
        return [entry[1] for entry in self.log if entry[0] == "text"]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = BOUND_S) -> None:
        """Wait, within ``timeout``, until ``predicate()`` holds after a socket event."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_texts(self, count: int, timeout: float = BOUND_S) -> list[str]:
        """Wait for at least ``count`` text frames; return all of them."""
        try:
            await self.wait_for(lambda: len(self.texts) >= count, timeout)
        except TimeoutError:
            raise AssertionError(
                f"expected {count} frames within {timeout:.1f}s, got {len(self.texts)}: "
                f"{self.texts[-5:]}"
            ) from None
        return self.texts

    def _record(self, entry: tuple[Any, ...]) -> None:
        self.log.append(entry)
        self._changed.set()


class WsClient:
    """One accepted connection on a node, and the socket its frames reach."""

    def __init__(self, conn: Connection, sock: FakeSocket) -> None:
        self.conn = conn
        self.sock = sock

    @property
    def id(self) -> str:
        return self.conn.id


class RecordingSink:
    """A ``BackendSink`` that keeps every delivery (for tests below the manager)."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, bytes, str | None]] = []
        self._changed = asyncio.Event()

    def deliver(self, room: str, data: bytes, exclude: str | None) -> None:
        self.delivered.append((room, data, exclude))
        self._changed.set()

    def deliver_to_connection(self, connection_id: str, data: bytes) -> bool:
        return False

    async def wait_count(self, count: int, timeout: float = BOUND_S) -> None:
        try:
            async with asyncio.timeout(timeout):
                while len(self.delivered) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"expected {count} deliveries within {timeout:.1f}s, got {len(self.delivered)}"
            ) from None


class ConnectionEvents:
    """``connect_options`` callbacks that let a test await (re)connection."""

    def __init__(self) -> None:
        self.disconnected = asyncio.Event()
        self.reconnected = asyncio.Event()
        self.errors: list[Exception] = []

    def options(self) -> dict[str, Any]:
        return {
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "error_cb": self._on_error,
            "reconnect_time_wait": RECONNECT_WAIT_S,
            "max_reconnect_attempts": -1,
        }

    async def _on_disconnected(self) -> None:
        self.disconnected.set()

    async def _on_reconnected(self) -> None:
        self.reconnected.set()

    async def _on_error(self, exc: Exception) -> None:
        self.errors.append(exc)


class Node:
    """A connection manager on a NATS backend, with a way to add connections."""

    def __init__(self, manager: WebSocketConnectionManager, events: ConnectionEvents) -> None:
        self.manager = manager
        self.backend: NatsBackend = manager.backend  # type: ignore[assignment]
        self.events = events

    @property
    def nc(self) -> Client:
        return self.backend.client

    async def connect(self, presence: str | None = None) -> WsClient:
        """An accepted connection registered with this node's manager."""
        sock = FakeSocket()
        conn = Connection(  # type: ignore[arg-type]
            sock,
            ConnectionLimits(close_timeout_s=1.0),
            connection_id=self.manager.new_connection_id(),
        )
        await conn.accept()
        self.manager.register(conn, presence)
        return WsClient(conn, sock)

    async def join(self, room: str, presence: str | None = None) -> WsClient:
        """A new connection that has joined ``room``."""
        client = await self.connect(presence)
        await self.manager.join_room(client.conn, room)
        return client

    async def delay_writes(self, seconds: float) -> None:
        """See :func:`delay_writes`."""
        await delay_writes(self.nc, seconds)

    async def kill(self) -> None:
        """Die without a goodbye: heartbeats stop and the NATS connection drops."""
        heartbeat = self.backend.presence._heartbeat
        if heartbeat is not None:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        await self.backend.client.close()


class DirectoryHandle:
    """A running ``Directory`` and the members it reported lost."""

    directory: Directory

    def __init__(self) -> None:
        self.lost: list[Lost] = []
        self._changed = asyncio.Event()

    async def on_lost(self, lost: list[Lost]) -> None:
        self.lost.extend(lost)
        self._changed.set()

    def lost_members(self) -> set[tuple[str, str]]:
        return {(x.room, x.member.connection_id) for x in self.lost}

    async def wait_lost(self, expected: set[tuple[str, str]], timeout: float = BOUND_S) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not expected <= self.lost_members():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"members not reported lost within {timeout:.1f}s: {expected - self.lost_members()}"
            ) from None

    async def wait_applied(
        self, predicate: Callable[[], bool], timeout: float = BOUND_S, what: str = ""
    ) -> None:
        """Wait until ``predicate()`` holds after an event the directory applied."""
        applied = self.directory._applied
        try:
            async with asyncio.timeout(timeout), applied:
                await applied.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(f"directory did not reach: {what}") from None


class Cluster:
    """Starts nodes, directories and raw clients on one server; stops them all."""

    def __init__(self, server: NatsServer, stack: contextlib.AsyncExitStack) -> None:
        self.server = server
        self._stack = stack

    def connection_events(self) -> ConnectionEvents:
        """Callbacks to pass to :meth:`client`, to await its (re)connection."""
        return ConnectionEvents()

    async def client(self, events: ConnectionEvents | None = None) -> Client:
        """A raw NATS client (reconnecting forever), closed at the end of the test."""
        options = (events or ConnectionEvents()).options()
        nc = await nats.connect(self.server.url, **options)
        self._stack.push_async_callback(_close_client, nc)
        return nc

    async def node(
        self, *, heartbeat_interval_s: float = 0.2, presence: bool = True, **options: Any
    ) -> Node:
        """A started node; stopped (with its goodbye) at the end of the test."""
        events = ConnectionEvents()
        backend = NatsBackend(
            servers=self.server.url,
            presence=presence,
            heartbeat_interval_s=heartbeat_interval_s,
            request_timeout_s=options.pop("request_timeout_s", 1.0),
            connect_options=events.options(),
            **options,
        )
        manager = WebSocketConnectionManager(backend)
        await manager.start()
        self._stack.push_async_callback(manager.stop)
        return Node(manager, events)

    async def backend(self, **options: Any) -> tuple[NatsBackend, RecordingSink]:
        """A started backend without a manager, delivering into a recording sink."""
        backend = NatsBackend(servers=self.server.url, presence=False, **options)
        sink = RecordingSink()
        await backend.start(sink)
        self._stack.push_async_callback(backend.stop)
        return backend, sink

    async def directory(
        self,
        nc: Client | None = None,
        *,
        ttl_s: float = 5.0,
        expiry_interval_s: float = 0.2,
        **options: Any,
    ) -> DirectoryHandle:
        """A started ``Directory`` (on its own client unless given one)."""
        if nc is None:
            nc = await self.client()
        handle = DirectoryHandle()
        handle.directory = Directory(
            nc,
            Subjects("chat"),
            ttl_s=ttl_s,
            expiry_interval_s=expiry_interval_s,
            on_lost=handle.on_lost,
            **options,
        )
        await handle.directory.start()
        self._stack.push_async_callback(handle.directory.stop)
        return handle

    async def settle(self, nc: Client) -> None:
        """Return once the server has processed everything ``nc`` sent so far.

        ``nc.flush()`` alone is not enough: nats-py writes its PING ahead of
        commands still queued for its flusher task.
        """
        await nc._flush_pending(force_flush=True)
        await nc.flush()

    async def delay_writes(self, nc: Client, seconds: float) -> None:
        """See :func:`delay_writes`."""
        await delay_writes(nc, seconds)

    async def converge(
        self,
        fetch: Callable[[], Awaitable[T]],
        expected: T,
        *,
        what: str,
        timeout: float = BOUND_S,
        normalize: Callable[[T], Any] = lambda v: v,
    ) -> None:
        """Poll ``fetch()`` until it equals ``expected`` (for eventually consistent views)."""
        last: Any = None
        try:
            async with asyncio.timeout(timeout):
                while (last := normalize(await fetch())) != normalize(expected):
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(
                f"{what}: expected {normalize(expected)!r} within {timeout:.1f}s, last saw {last!r}"
            ) from None


async def delay_writes(nc: Client, seconds: float) -> None:
    """Make nats-py's flusher task hand queued commands to the socket ``seconds`` late.

    Models a busy event loop, where the flusher runs well after a command was
    queued. Reaches into nats-py: its flusher takes work from ``_flush_queue``.
    """
    queue = nc._flush_queue
    assert queue is not None
    get = queue.get

    async def late_get() -> Any:
        item = await get()
        await asyncio.sleep(seconds)
        return item

    queue.get = late_get  # type: ignore[method-assign]
    # The flusher is parked in the old ``get``: one pass puts it on the new one.
    await nc.flush()


async def _close_client(nc: Client) -> None:
    if not nc.is_closed:
        with contextlib.suppress(Exception):
            await nc.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A real nats-server of this test's own, on a free port."""
    async with nats_server(tmp_path / "nats") as running:
        yield running


@pytest.fixture
async def cluster(server: NatsServer) -> AsyncIterator[Cluster]:
    """``await cluster.node()``, ``await cluster.directory()``...; all stopped afterwards."""
    async with contextlib.AsyncExitStack() as stack:
        yield Cluster(server, stack)
