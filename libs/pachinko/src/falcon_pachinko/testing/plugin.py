"""pytest fixtures for falcon_pachinko apps.

Enable with ``pytest_plugins = ["falcon_pachinko.testing.plugin"]`` in a
``conftest.py``. Needs pytest-asyncio. Each fixture is a factory; whatever it
started is stopped when the test ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio

from . import LiveServer, WSClient, connect, serve

__all__ = ["pachinko_connect", "pachinko_serve"]

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
