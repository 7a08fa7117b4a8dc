"""pytest fixtures for falcon_pachinko apps.

Enable with ``pytest_plugins = ["falcon_pachinko.testing.plugin"]`` in a
``conftest.py``. Needs pytest-asyncio. Each fixture is a factory; whatever it
started is stopped when the test ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from . import LiveServer, WSClient, connect, serve

__all__ = ["pachinko_connect", "pachinko_nats", "pachinko_serve"]

ServeFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def pachinko_serve() -> AsyncIterator[Callable[..., Any]]:
    """``server = await pachinko_serve(app, **uvicorn_options)`` -> :class:`LiveServer`."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(app: Any, **options: Any) -> LiveServer:
            return await stack.enter_async_context(serve(app, **options))

        yield start


@pytest_asyncio.fixture
async def pachinko_connect() -> AsyncIterator[Callable[..., Any]]:
    """``client = await pachinko_connect(url, **options)`` -> :class:`WSClient`."""
    async with contextlib.AsyncExitStack() as stack:

        async def open_client(url: str, **options: Any) -> WSClient:
            return await stack.enter_async_context(connect(url, **options))

        yield open_client


@pytest_asyncio.fixture
async def pachinko_nats(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``server = await pachinko_nats(jetstream=True)`` -> a running ``NatsServer``.

    Each call starts its own real ``nats-server`` on a free port (JetStream on, its
    store under the test's ``tmp_path``); ``await server.restart()`` brings it back
    on the same port. Needs ``falcon-pachinko[testing]``.
    """
    from .nats import nats_server

    async with contextlib.AsyncExitStack() as stack:
        count = 0

        async def start(*, jetstream: bool = True) -> Any:
            nonlocal count
            count += 1
            store = tmp_path / f"nats-{count}"
            return await stack.enter_async_context(nats_server(store, jetstream=jetstream))

        yield start
