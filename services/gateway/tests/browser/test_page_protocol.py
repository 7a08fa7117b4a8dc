"""The page speaks the whole protocol: presence, history, resume, pending sends, close codes.

Every wait is a Playwright ``expect`` (or a test-kit receive) with an explicit bound.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from playwright.async_api import expect

from chat_gateway.app import create_app
from chat_gateway.auth import issue_token
from chat_gateway.server import uvicorn_options
from falcon_pachinko import PachinkoApp
from falcon_pachinko.testing import LiveServer, WSClient, connect, serve
from falcon_pachinko.testing.nats import NatsServer

from .conftest import ChatPage, OpenPage, gateway_settings, serve_on_nats, serve_on_port, timeout_ms

pytestmark = pytest.mark.integration

T = timeout_ms()
#: Reconnecting waits out a back-off (up to a few seconds after several refusals).
RECONNECT = timeout_ms(20)
#: Set to a path to keep the screenshot of a page with presence, history and times.
SCREENSHOT_ENV = "CHAT_SCREENSHOT"
TIME_TEXT = re.compile(r"^\d{1,2}:\d{2}")


async def expect_lines(chat: ChatPage, lines: list[str], timeout: float = T) -> None:
    """Exactly these chat messages (``sender: text``), in order: none missing, none twice."""
    await expect(chat.chat_lines()).to_have_text(lines, timeout=timeout)


async def expect_presence(chat: ChatPage, users: list[str]) -> None:
    await expect(chat.by_id("presence").locator("li")).to_have_text(users, timeout=T)


async def say(chat: ChatPage, text: str) -> None:
    await chat.by_id("message-input").fill(text)
    await chat.by_id("message-input").press("Enter")


async def test_the_presence_list_follows_who_comes_and_goes(
    gateway: LiveServer, open_page: OpenPage
) -> None:
    alice = await open_page(gateway)
    bob = await open_page(gateway)
    await alice.join_and_wait("lobby", "Alice")
    await expect_presence(alice, ["Alice"])
    await bob.join_and_wait("lobby", "Bob")
    await expect_presence(bob, ["Alice", "Bob"])  # the roster (serverPresence)
    await expect_presence(alice, ["Alice", "Bob"])  # serverUserJoined
    await expect(alice.by_id("presence").locator("li.me")).to_have_text("Alice", timeout=T)

    # The room picker of someone about to join lists the room and its people.
    carol = await open_page(gateway)
    await carol.by_id("user-input").fill("Carol")
    await carol.by_id("room-input").fill("lo")
    options = carol.by_id("room-option")
    await expect(options).to_have_text(["lobby (2)"], timeout=T)
    await carol.by_id("room-input").fill("x")
    await expect(options).to_have_count(0, timeout=T)
    await expect(carol.by_id("room-hint")).to_contain_text('No rooms starting with "x"', timeout=T)
    await carol.by_id("room-input").fill("")
    await expect(options).to_have_text(["lobby (2)"], timeout=T)
    await options.first.click()
    await expect(carol.by_id("room-input")).to_have_value("lobby", timeout=T)

    # Closing Bob's tab is his last connection: he leaves Alice's list.
    await bob.page.close()
    await expect_presence(alice, ["Alice"])
    await expect(alice.entries("serverUserLeft")).to_have_text(["Bob left the room"], timeout=T)


async def test_several_typists_are_named_together(gateway: LiveServer, open_page: OpenPage) -> None:
    alice, bob, carol = [await open_page(gateway) for _ in range(3)]
    for chat, name in ((carol, "Carol"), (bob, "Bob"), (alice, "Alice")):
        await chat.join_and_wait("typing", name)
    typing = carol.by_id("typing")
    await bob.by_id("message-input").press_sequentially("hm")
    await expect(typing).to_have_text("Bob is typing…", timeout=T)
    await alice.by_id("message-input").press_sequentially("so")
    await expect(typing).to_have_text("Alice and Bob are typing…", timeout=T)
    await alice.by_id("message-input").press("Enter")  # sending stops typing
    await expect(typing).to_have_text("Bob is typing…", timeout=T)
    await bob.by_id("message-input").fill("")
    await expect(typing).to_have_text("", timeout=T)
    await expect_lines(carol, ["Alice: so"])


async def test_a_late_joiner_sees_history_with_senders_and_times_and_pages_back(
    open_page: OpenPage, tmp_path: Path
) -> None:
    # Three messages on join, three per older page: seven messages take three pages.
    env = {"CHAT_HISTORY_ON_JOIN": "3", "CHAT_HISTORY_PAGE_MAX": "3"}
    async with serve_on_port(**env) as server:
        alice = await open_page(server)
        bob = await open_page(server)
        await alice.join_and_wait("history", "Alice")
        await bob.join_and_wait("history", "Bob")
        said = []
        for n in range(1, 8):
            speaker, name = (alice, "Alice") if n % 2 else (bob, "Bob")
            await say(speaker, f"message {n}")
            said.append(f"{name}: message {n}")
            await expect_lines(alice, said)
        await expect(alice.by_id("history-more")).to_be_hidden(timeout=T)

        carol = await open_page(server)
        await carol.join_and_wait("history", "Carol")
        await expect_lines(carol, said[-3:])
        more = carol.by_id("history-more")
        await expect(more).to_be_visible(timeout=T)
        await expect_presence(carol, ["Alice", "Bob", "Carol"])

        # Each message shows its sender and its time, from the stored ts.
        entries = carol.entries("serverNewMessage")
        await expect(entries.locator(".user")).to_have_text(["Alice", "Bob", "Alice"], timeout=T)
        times = entries.locator("time")
        await expect(times).to_have_count(3, timeout=T)
        for text in await times.all_text_contents():
            assert TIME_TEXT.match(text), text
        stamp = await times.first.get_attribute("datetime")
        assert stamp is not None
        seen = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert abs(seen - time.time()) < 120, stamp

        # The history sits before live messages, and a live one goes after it.
        await say(alice, "live one")
        said.append("Alice: live one")
        await expect_lines(carol, said[-4:])

        # "Load older" pages back (before = the oldest seq shown) until nothing is older.
        await more.click()
        await expect_lines(carol, said[-7:])
        await expect(more).to_be_visible(timeout=T)
        await more.click()
        await expect_lines(carol, said)
        await expect(more).to_be_hidden(timeout=T)
        await expect(carol.entries("serverSystemMessage")).to_have_text(
            ["Welcome Carol to room 'history'!"], timeout=T
        )

        screenshot = tmp_path / "chat-page-history.png"
        await carol.page.screenshot(path=screenshot)
        assert screenshot.stat().st_size > 0
        if keep := os.environ.get(SCREENSHOT_ENV):
            shutil.copyfile(screenshot, keep)


def chat_message(text: str) -> dict[str, Any]:
    return {
        "type": "clientSendMessage",
        "payload": {"text": text, "clientMsgId": str(uuid.uuid4())},
    }


async def echoed(client: WSClient, text: str) -> dict[str, Any]:
    """Read ``client``'s frames until the chat message ``text`` arrives; return its payload."""
    while True:
        frame = await client.expect("serverNewMessage")
        if frame["payload"]["text"] == text:
            return cast(dict[str, Any], frame["payload"])


async def test_a_restarted_gateway_loses_nothing_and_shows_nothing_twice(
    nats: NatsServer, open_page: OpenPage
) -> None:
    """Alice's gateway restarts while Bob (on another gateway) talks and Alice types."""
    async with serve_on_nats(nats.url) as gateway_b:
        async with connect(gateway_b.ws_url("/ws/chat/ops", user="Bob")) as bob:
            async with serve_on_nats(nats.url) as gateway_a:
                port = gateway_a.port
                alice = await open_page(gateway_a)
                await alice.join_and_wait("ops", "Alice")
                await bob.send_json(chat_message("before the restart"))
                first = await echoed(bob, "before the restart")
                await expect_lines(alice, ["Bob: before the restart"])
            # Gateway A is gone (its clients got 1012).
            status = alice.by_id("status")
            await expect(status).to_have_attribute("data-state", "reconnecting", timeout=T)
            await expect(status).to_contain_text("reconnecting", timeout=T)

            # Typed while disconnected: shown once, pending, and kept.
            await say(alice, "typed while away")
            pending = alice.entries("serverNewMessage").filter(has_text="typed while away")
            await expect(pending).to_have_count(1, timeout=T)
            await expect(pending).to_have_attribute("data-pending", "true", timeout=T)
            await expect(pending.locator(".pending-mark")).to_have_text("sending…", timeout=T)
            await expect(pending.locator(".pending-mark")).to_be_visible(timeout=T)

            # Meanwhile the room goes on through gateway B, stored in JetStream.
            said_meanwhile = ["while A was down 1", "while A was down 2", "while A was down 3"]
            for text in said_meanwhile:
                await bob.send_json(chat_message(text))
                await echoed(bob, text)

            async with serve_on_nats(nats.url, port):
                # Back on the same port: the page resumes after the last seq it saw...
                await expect(status).to_have_text("connected", timeout=RECONNECT)
                expected = [
                    "Bob: before the restart",
                    *(f"Bob: {text}" for text in said_meanwhile),
                    "Alice: typed while away",
                ]
                # ...shows every message once, and its own message once, no longer pending.
                await expect_lines(alice, expected)
                await expect(
                    alice.by_id("messages").locator('[data-pending="true"]')
                ).to_have_count(0, timeout=T)
                await expect(alice.by_id("messages").locator(".pending-mark")).to_have_count(
                    0, timeout=T
                )
                resumed = alice.websockets[-1].url
                assert f"since={first['seq']}" in resumed, resumed
                assert all("since=" not in ws.url for ws in alice.websockets[:1])

                # Bob got Alice's message exactly once: count it up to a marker of his own.
                await bob.send_json(chat_message("marker"))
                texts = []
                while not texts or texts[-1] != "marker":
                    texts.append((await bob.expect("serverNewMessage"))["payload"]["text"])
                assert texts.count("typed while away") == 1, texts
                await expect_lines(alice, [*expected, "Bob: marker"])


async def test_a_resume_whose_messages_are_gone_says_so(open_page: OpenPage) -> None:
    # The in-process history dies with its gateway: after a restart nothing after
    # the page's last seq is stored any more, and the resume says resumed: false.
    async with serve_on_port() as server:
        alice = await open_page(server)
        await alice.join_and_wait("ops", "Alice")
        await say(alice, "said before the restart")
        await expect_lines(alice, ["Alice: said before the restart"])
        port = server.port
    async with serve_on_port(port):
        await expect(alice.by_id("status")).to_have_text("connected", timeout=RECONNECT)
        note = alice.entries("clientNote")
        await expect(note).to_contain_text("expired", timeout=T)
        await expect(note).to_be_visible(timeout=T)
        await expect_lines(alice, ["Alice: said before the restart"])
        assert "since=" in alice.websockets[-1].url


async def test_a_kicked_page_says_so_and_stays_closed(open_page: OpenPage) -> None:
    settings = gateway_settings()
    app = create_app(settings)
    async with serve(app, **{**uvicorn_options(settings), "port": 0}) as server:
        alice = await open_page(server)
        await alice.join_and_wait("ops", "Alice")
        assert await cast(PachinkoApp, app).ws_connection_manager.kick("Alice") == 1
        status = alice.by_id("status")
        await expect(status).to_contain_text("kicked", timeout=T)
        await expect(status).to_have_attribute("data-state", "closed", timeout=T)
        await expect(alice.by_id("message-input")).to_be_disabled(timeout=T)
        # Terminal: no second connection, even after the longest first back-off.
        await alice.page.wait_for_timeout(1_500)
        assert len(alice.websockets) == 1


SECRET = "browser-test-secret-0123456789abcdef"


async def test_an_expired_token_says_so(open_page: OpenPage) -> None:
    # Expired a second ago, within the leeway: accepted, then closed with 4002 at once.
    token = issue_token(SECRET, "Alice", ttl_s=60, now=time.time() - 61)
    env = {"CHAT_AUTH": "jwt", "CHAT_JWT_SECRET": SECRET}
    async with serve_on_port(**env) as server:
        alice = await open_page(server)
        await alice.by_id("token-toggle").click()
        await alice.by_id("token-input").fill(token)
        await alice.join("ops", "")
        status = alice.by_id("status")
        await expect(status).to_contain_text("token expired", timeout=T)
        await expect(status).to_have_attribute("data-state", "closed", timeout=T)
        await expect(alice.by_id("user-label")).to_have_text("Alice", timeout=T)
