"""The gateway's Gate: health and 503s until the chat opens, then the chat; in-process."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from chat_gateway.app import create_app
from chat_gateway.server import Gate
from chat_gateway.settings import load_settings
from chat_runtime.ops import ops_app
from falcon_pachinko.testing import LiveServer, connect, handshake_status, scaled, serve

pytestmark = pytest.mark.integration


def status(server: LiveServer, path: str) -> int:
    try:
        with urllib.request.urlopen(server.url + path, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def get(server: LiveServer, path: str) -> int:
    return await asyncio.to_thread(status, server, path)


def gate_for(opener: Callable[[], Awaitable[Any]], ready: Callable[[], bool]) -> Gate:
    return Gate(ops_app(lambda: False, CollectorRegistry()), ready, opener)


def chat_app() -> Any:
    settings = load_settings({"CHAT_AUTH": "dev", "CHAT_ANNOUNCE_INTERVAL_S": "0"})
    return create_app(settings, registry=CollectorRegistry())


async def test_until_the_chat_opens_health_answers_and_handshakes_get_503() -> None:
    may_open = asyncio.Event()
    ready = True

    async def opener() -> Any:
        await may_open.wait()
        return chat_app()

    gate = gate_for(opener, lambda: ready)
    async with serve(gate) as server:
        url = server.ws_url("/ws/chat/general", user="Ann")
        assert await get(server, "/healthz") == 200
        assert await get(server, "/readyz") == 503
        assert await handshake_status(url) == 503

        may_open.set()
        async with asyncio.timeout(scaled(5)):
            await gate.settled.wait()
        assert gate.failure is None and gate.app is not None
        assert await get(server, "/readyz") == 200  # now the chat app's own
        async with connect(url) as ann:
            await ann.expect("serverSystemMessage")

        ready = False  # NATS down, or draining: refused again, at once
        assert await handshake_status(url) == 503


async def test_an_opener_that_fails_is_reported_and_nothing_opens() -> None:
    async def opener() -> Any:
        raise ConnectionError("cannot connect to NATS")

    gate = gate_for(opener, lambda: True)
    async with serve(gate) as server:
        async with asyncio.timeout(scaled(5)):
            await gate.settled.wait()
        assert isinstance(gate.failure, ConnectionError)
        assert gate.app is None
        assert await handshake_status(server.ws_url("/ws/chat/general", user="Ann")) == 503


async def test_shutdown_cancels_an_opener_still_waiting() -> None:
    cancelled = asyncio.Event()

    async def opener() -> Any:
        try:
            await asyncio.Event().wait()  # NATS never answers
        finally:
            cancelled.set()

    gate = gate_for(opener, lambda: True)
    async with asyncio.timeout(scaled(5)):
        async with serve(gate) as server:
            assert await get(server, "/healthz") == 200
    assert cancelled.is_set()
    assert not gate.settled.is_set()
