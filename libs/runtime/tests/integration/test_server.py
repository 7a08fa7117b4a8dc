"""chat_runtime.server.Server under a real uvicorn: startup, the port, exit hooks, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from chat_runtime.server import Server
from falcon_pachinko.testing import scaled

pytestmark = pytest.mark.integration


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def failing_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no"})


def config(asgi: Any = app, port: int = 0) -> uvicorn.Config:
    return uvicorn.Config(asgi, host="127.0.0.1", port=port, lifespan="on", log_config=None)


async def started(server: Server) -> asyncio.Task[bool]:
    task = asyncio.create_task(server.run_until_exit())
    async with asyncio.timeout(scaled(5)):
        await server.startup_done.wait()
    return task


async def test_it_reports_the_port_and_runs_the_exit_hooks_once() -> None:
    ports: list[int] = []
    calls: list[str] = []
    server = Server(config(), on_exit=[lambda: calls.append("first")], on_started=ports.append)
    server.on_exit.append(lambda: calls.append("second"))
    task = await started(server)
    assert server.started and ports == [server.port] and server.port > 0
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await reader.read()).startswith(b"HTTP/1.1 204")
    writer.close()
    server.request_exit()
    server.request_exit()
    async with asyncio.timeout(scaled(5)):
        assert await task is True
    assert calls == ["first", "second"]


@pytest.fixture
async def taken_port() -> AsyncIterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_a_port_in_use_is_reported_not_raised(taken_port: int) -> None:
    server = Server(config(port=taken_port), on_started=lambda port: pytest.fail("started"))
    task = await started(server)
    async with asyncio.timeout(scaled(5)):
        assert await task is False
    assert not server.started


async def test_a_failed_lifespan_startup_is_reported_not_raised() -> None:
    server = Server(config(failing_startup))
    task = await started(server)
    async with asyncio.timeout(scaled(5)):
        assert await task is False


async def test_no_signal_handler_is_installed_unless_asked() -> None:
    before = signal.getsignal(signal.SIGTERM)
    server = Server(config())
    task = await started(server)
    assert signal.getsignal(signal.SIGTERM) is before
    server.request_exit()
    async with asyncio.timeout(scaled(5)):
        await task


async def test_sigterm_runs_the_hooks_stops_gracefully_and_is_not_raised_again() -> None:
    before = signal.getsignal(signal.SIGTERM)
    draining: list[bool] = []
    server = Server(config(), handle_signals=True, on_exit=[lambda: draining.append(True)])
    task = await started(server)
    assert signal.getsignal(signal.SIGTERM) == server.handle_exit
    os.kill(os.getpid(), signal.SIGTERM)
    async with asyncio.timeout(scaled(5)):
        assert await task is True
    # Still alive: the signal was not raised again; the previous handler is back.
    assert draining == [True]
    assert signal.getsignal(signal.SIGTERM) is before


async def test_a_second_sigint_during_the_drain_ends_it_and_still_shuts_down_gracefully() -> None:
    """The first signal starts the drain; a second one ends the drain at once, and
    uvicorn's graceful shutdown (the app's lifespan shutdown included) still runs."""
    drain_started = asyncio.Event()
    lifespan_done: list[bool] = []

    async def lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                lifespan_done.append(True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def drain() -> None:
        drain_started.set()
        await asyncio.sleep(3600)  # ended by the second signal

    server = Server(config(lifespan_app), handle_signals=True, drain=drain)
    task = await started(server)
    os.kill(os.getpid(), signal.SIGINT)
    async with asyncio.timeout(scaled(5)):
        await drain_started.wait()
    os.kill(os.getpid(), signal.SIGINT)
    async with asyncio.timeout(scaled(5)):
        assert await task is True
    assert not server.force_exit
    assert lifespan_done == [True]
