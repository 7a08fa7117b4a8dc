"""Fixtures: the gateway app under a real uvicorn, with the production WebSocket options."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio

from chat_gateway.app import create_app
from chat_gateway.server import uvicorn_options
from chat_gateway.settings import load_settings
from falcon_pachinko.testing import LiveServer, serve

StartGateway = Callable[..., Awaitable[LiveServer]]


@pytest_asyncio.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    """``server = await start_gateway(CHAT_X="...")``: a single-process gateway.

    Development auth and no announcements unless the test sets them.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(**env: str) -> LiveServer:
            settings = load_settings({"CHAT_AUTH": "dev", "CHAT_ANNOUNCE_INTERVAL_S": "0", **env})
            app = create_app(settings)
            options = {**uvicorn_options(settings), "port": 0}  # a free port
            return await stack.enter_async_context(serve(app, **options))

        yield start
