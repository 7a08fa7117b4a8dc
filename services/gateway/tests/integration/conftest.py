"""Fixtures: the gateway app under a real uvicorn, with the production WebSocket options."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio
import websockets
from prometheus_client import CollectorRegistry
from websockets.exceptions import InvalidStatus

from chat_gateway.app import create_app
from chat_gateway.server import uvicorn_options
from chat_gateway.settings import load_settings
from falcon_pachinko.testing import LiveServer, scaled, serve

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


REJECTED = "chat_gateway_handshakes_rejected_total"
ROOM = "/ws/chat/general"


class Gateway:
    def __init__(self, server: LiveServer, registry: CollectorRegistry) -> None:
        self.server = server
        self.registry = registry

    def rejected(self, reason: str) -> float:
        return self.registry.get_sample_value(REJECTED, {"reason": reason}) or 0.0

    async def status(self, path: str = ROOM, origin: str | None = None, **params: str) -> int:
        headers = {"Origin": origin} if origin is not None else {}
        try:
            async with websockets.connect(
                self.server.ws_url(path, **params),
                additional_headers=headers,
                open_timeout=scaled(3.0),
            ):
                return 101
        except InvalidStatus as exc:
            return int(exc.response.status_code)


StartObserved = Callable[..., Awaitable[Gateway]]


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[StartObserved]:
    """``gw = await gateway(CHAT_X=...)``: a single-process gateway and its registry."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**env: str) -> Gateway:
            settings = load_settings({"CHAT_ANNOUNCE_INTERVAL_S": "0", **env})
            registry = CollectorRegistry()
            app = create_app(settings, registry=registry)
            options = {**uvicorn_options(settings), "port": 0}
            server = await stack.enter_async_context(serve(app, **options))
            return Gateway(server, registry)

        yield start
