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

__all__ = ["pachinko_connect", "pachinko_nats", "pachinko_nats_cluster", "pachinko_serve"]

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


@pytest_asyncio.fixture
async def pachinko_nats_cluster(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``cluster = await pachinko_nats_cluster(size=3)`` -> a running ``NatsCluster``.

    Each call starts its own cluster of real ``nats-server`` processes on 127.0.0.1
    (routes up between all of them before it returns); ``cluster.urls`` lists the
    members' client URLs, ``await cluster.kill(i)`` and ``await cluster.restart(i)``
    take one member down and bring it back. Needs ``falcon-pachinko[testing]``.
    """
    from .nats import nats_cluster

    async with contextlib.AsyncExitStack() as stack:
        count = 0

        async def start(*, size: int = 3, jetstream: bool = False) -> Any:
            nonlocal count
            count += 1
            root = tmp_path / f"nats-cluster-{count}"
            return await stack.enter_async_context(
                nats_cluster(root, size=size, jetstream=jetstream)
            )

        yield start
