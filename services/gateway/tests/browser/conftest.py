"""Fixtures: the gateway's page in a real headless Chromium, against a real uvicorn.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``, or ``$CHAT_CHROMIUM``),
driven by Playwright; ``playwright install`` is never needed. Without the browser
the tests skip, unless ``CHAT_REQUIRE_BROWSER=1`` (as in CI), where they fail.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Error,
    Locator,
    Page,
    WebSocket,
    async_playwright,
    expect,
)

from chat_gateway.app import create_app, history_config
from chat_gateway.server import uvicorn_options
from chat_gateway.settings import Settings, load_settings
from chat_protocol import subjects
from falcon_pachinko import NatsBackend
from falcon_pachinko.testing import LiveServer, scaled, serve
from falcon_pachinko.testing.nats import NatsServer, nats_server

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def timeout_ms(seconds: float = 5.0) -> float:
    """A bound for Playwright waits, in milliseconds, scaled like the test kit's."""
    return scaled(seconds) * 1000


def gateway_settings(**env: str) -> Settings:
    """Development auth and no announcements unless the test sets them."""
    return load_settings({"CHAT_AUTH": "dev", "CHAT_ANNOUNCE_INTERVAL_S": "0", **env})


def chromium_path() -> str:
    return os.environ.get("CHAT_CHROMIUM") or DEFAULT_CHROMIUM


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium, launched for this test and closed after it."""
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        reason = (
            f"no Chromium executable at {path} (install Debian's 'chromium' package, "
            "or point CHAT_CHROMIUM at a Chromium binary)"
        )
        if os.environ.get("CHAT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; CHAT_REQUIRE_BROWSER=1 forbids skipping", pytrace=False)
        pytest.skip(reason)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS, timeout=timeout_ms(30)
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[LiveServer]:
    """A single-process gateway serving the page at ``/``."""
    settings = gateway_settings()
    options = {**uvicorn_options(settings), "port": 0}  # a free port
    async with serve(create_app(settings), **options) as server:
        yield server


@dataclass
class ChatPage:
    """One browser tab on the chat page, with what it observed."""

    page: Page
    websockets: list[WebSocket] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_websocket(self, ws: WebSocket) -> None:
        self.websockets.append(ws)

    def on_page_error(self, error: Error) -> None:
        self.errors.append(f"page error: {error}")

    def on_console(self, message: ConsoleMessage) -> None:
        # Chromium logs every refused or failed WebSocket connection as a console
        # error; the tests that provoke them check the page's status instead.
        if message.type == "error" and not message.text.startswith("WebSocket connection to "):
            self.errors.append(f"console error: {message.text}")

    def by_id(self, test_id: str) -> Locator:
        return self.page.get_by_test_id(test_id)

    def entries(self, message_type: str) -> Locator:
        """The log entries of one server message type, in order."""
        return self.by_id("messages").locator(
            f'[data-testid="message"][data-type="{message_type}"]'
        )

    def chat_lines(self) -> Locator:
        """Each chat message's ``sender: text`` (without its time or pending mark), in order."""
        return self.entries("serverNewMessage").locator(".line")

    async def join(self, room: str, user: str) -> None:
        """Fill the form and press Join (does not wait for the connection)."""
        await self.by_id("room-input").fill(room)
        await self.by_id("user-input").fill(user)
        await self.by_id("join-button").click()

    async def join_and_wait(self, room: str, user: str) -> None:
        await self.join(room, user)
        await expect(self.by_id("status")).to_have_attribute(
            "data-state", "connected", timeout=timeout_ms()
        )
        await expect(self.entries("serverSystemMessage")).to_have_text(
            [f"Welcome {user} to room '{room}'!"], timeout=timeout_ms()
        )


OpenPage = Callable[..., Awaitable[ChatPage]]


@pytest_asyncio.fixture
async def open_page(browser: Browser) -> AsyncIterator[OpenPage]:
    """``chat = await open_page(server)``: the page in a fresh browser context.

    Each call is a separate context (its own cookies and storage), like a
    separate person. A JavaScript error or console error on any page fails the
    test: a blocked script or a broken handler must not pass unnoticed.
    """
    pages: list[ChatPage] = []
    contexts = []

    async def open_(server: LiveServer, *, install_clock: bool = False) -> ChatPage:
        context = await browser.new_context(viewport={"width": 900, "height": 700})
        contexts.append(context)
        context.set_default_timeout(timeout_ms())
        page = await context.new_page()
        chat = ChatPage(page)
        page.on("websocket", chat.on_websocket)
        page.on("pageerror", chat.on_page_error)
        page.on("console", chat.on_console)
        if install_clock:
            await page.clock.install()
        response = await page.goto(server.url + "/", timeout=timeout_ms())
        assert response is not None and response.ok, response
        pages.append(chat)
        return chat

    try:
        yield open_
    finally:
        for context in contexts:
            await context.close()
    errors = [error for chat in pages for error in chat.errors]
    assert not errors, errors


# ---------- a gateway that can be stopped and started again on the same port ----------


@contextlib.asynccontextmanager
async def serve_on_port(port: int = 0, **env: str) -> AsyncIterator[LiveServer]:
    """A fresh gateway on ``127.0.0.1:port`` (a free one for 0), as a restart brings back."""
    settings = gateway_settings(**env)
    options = {**uvicorn_options(settings), "port": port}
    async with serve(create_app(settings), **options) as server:
        yield server


@contextlib.asynccontextmanager
async def serve_on_nats(nats_url: str, port: int = 0, **env: str) -> AsyncIterator[LiveServer]:
    """A gateway of a cluster: its rooms on NATS, its history in JetStream.

    Stopped and served again on the same port it is a restarted gateway: what was
    said meanwhile (through another gateway) is in the stream. No rooms service
    runs, so there is no roster and no presence news (chat works without them).
    """
    settings = gateway_settings(CHAT_BACKEND="nats", CHAT_NATS_URL=nats_url, **env)
    backend = NatsBackend(
        servers=nats_url,
        subject_prefix=subjects.PREFIX,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        request_timeout_s=0.5,
        history=history_config(settings),
    )
    options = {**uvicorn_options(settings), "port": port}
    async with serve(create_app(settings, backend), **options) as server:
        yield server


@pytest_asyncio.fixture
async def nats(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A real ``nats-server`` with JetStream, for this test."""
    async with nats_server(tmp_path / "nats") as server:
        yield server
