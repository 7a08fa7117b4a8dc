"""The chat page (``/``) in a real headless Chromium against a real gateway.

Every wait is a Playwright ``expect`` with an explicit (scaled) bound.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.async_api import expect

from falcon_pachinko.testing import LiveServer

from .conftest import ChatPage, OpenPage, serve_on_port, timeout_ms

pytestmark = pytest.mark.integration

T = timeout_ms()

#: Set to a path to keep the chat screenshot (e.g. ``/tmp/chat-page.png``).
SCREENSHOT_ENV = "CHAT_SCREENSHOT"


async def expect_chat(chat: ChatPage, lines: list[str]) -> None:
    """The page's log shows exactly these chat messages (``sender: text``), in order."""
    await expect(chat.chat_lines()).to_have_text(lines, timeout=T)


async def test_two_people_chat_through_the_page(
    gateway: LiveServer, open_page: OpenPage, tmp_path: Path
) -> None:
    # Alice's clock is Playwright's, so her typing idle timeout runs on demand.
    alice = await open_page(gateway, install_clock=True)
    bob = await open_page(gateway)

    await alice.join_and_wait("lobby", "Alice")
    await expect(alice.by_id("room-label")).to_have_text("lobby", timeout=T)
    await expect(alice.by_id("user-label")).to_have_text("Alice", timeout=T)
    await expect(alice.by_id("join-button")).to_be_hidden(timeout=T)

    await bob.join_and_wait("lobby", "Bob")
    await expect(alice.entries("serverUserJoined")).to_have_text(["Bob joined the room"], timeout=T)

    # Typing shows on the other page, and clears when the input is emptied...
    alice_input = alice.by_id("message-input")
    await alice_input.press_sequentially("Hel")
    await expect(bob.by_id("typing")).to_have_text("Alice is typing…", timeout=T)
    await alice_input.fill("")
    await expect(bob.by_id("typing")).to_have_text("", timeout=T)
    # ...after the idle timeout (3 s of page time)...
    await alice_input.press_sequentially("Hello")
    await expect(bob.by_id("typing")).to_have_text("Alice is typing…", timeout=T)
    await alice.page.clock.run_for(3_100)
    await expect(bob.by_id("typing")).to_have_text("", timeout=T)
    # ...and when the message is sent.
    await alice_input.fill("Hello everyone!")
    await expect(bob.by_id("typing")).to_have_text("Alice is typing…", timeout=T)
    await alice.by_id("send-button").click()
    for chat in (alice, bob):
        await expect_chat(chat, ["Alice: Hello everyone!"])
        await expect(chat.entries("serverNewMessage").locator(".user")).to_have_text(
            ["Alice"], timeout=T
        )
    await expect(bob.by_id("typing")).to_have_text("", timeout=T)
    await expect(alice_input).to_have_value("", timeout=T)
    await expect(alice_input).to_be_focused(timeout=T)

    # Enter sends; Shift+Enter is a new line within the message.
    bob_input = bob.by_id("message-input")
    await bob_input.press_sequentially("Hi Alice")
    await expect(alice.by_id("typing")).to_have_text("Bob is typing…", timeout=T)
    await bob_input.press("Shift+Enter")
    await bob_input.press_sequentially("second line")
    await expect(bob_input).to_have_value("Hi Alice\nsecond line", timeout=T)
    await bob_input.press("Enter")
    for chat in (alice, bob):
        await expect_chat(chat, ["Alice: Hello everyone!", "Bob: Hi Alice second line"])
        texts = await chat.chat_lines().all_text_contents()
        assert texts[-1] == "Bob: Hi Alice\nsecond line"
    await expect(bob_input).to_have_value("", timeout=T)
    await expect(alice.by_id("typing")).to_have_text("", timeout=T)

    screenshot = tmp_path / "chat-page.png"
    await alice.page.screenshot(path=screenshot)
    if keep := os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(screenshot, keep)

    await alice.by_id("leave-button").click()
    await expect(bob.entries("serverUserLeft")).to_have_text(["Alice left the room"], timeout=T)
    await expect(alice.page.locator("#chat-view")).to_be_hidden(timeout=T)
    await expect(alice.by_id("join-button")).to_be_visible(timeout=T)
    await expect(bob.by_id("status")).to_have_attribute("data-state", "connected", timeout=T)
    assert len(alice.websockets) == 1
    assert len(bob.websockets) == 1


INVALID_FORMS = [
    # (room, user, room error expected, user error expected)
    ("Bad Room!", "Alice", True, False),
    ("General", "Alice", True, False),
    ("-general", "Alice", True, False),
    ("r" * 65, "Alice", True, False),
    ("general", "", False, True),
    ("general", "   ", False, True),
    ("general", "Bob!", False, True),
    ("general", "<b>", False, True),
    ("general", "u" * 33, False, True),
    ("", "", True, True),
]


async def test_the_form_rejects_invalid_names_without_connecting(
    gateway: LiveServer, open_page: OpenPage
) -> None:
    chat = await open_page(gateway)
    room_input, user_input = chat.by_id("room-input"), chat.by_id("user-input")
    room_error, user_error = chat.by_id("room-error"), chat.by_id("user-error")
    for room, user, room_bad, user_bad in INVALID_FORMS:
        case = f"room={room!r} user={user!r}"
        await chat.join(room, user)
        for field, error, bad in (
            (room_input, room_error, room_bad),
            (user_input, user_error, user_bad),
        ):
            if bad:
                await expect(error, case).not_to_have_text("", timeout=T)
                await expect(field, case).to_have_attribute("aria-invalid", "true", timeout=T)
            else:
                await expect(error, case).to_have_text("", timeout=T)
                await expect(field, case).not_to_have_attribute("aria-invalid", "true", timeout=T)
        # Not joined: join() shows the chat view before it opens the socket.
        await expect(chat.page.locator("#chat-view"), case).to_be_hidden(timeout=T)
        await expect(chat.by_id("join-button"), case).to_be_visible(timeout=T)
        assert chat.websockets == [], case

    await expect(room_error).to_contain_text("lowercase letters", timeout=T)
    await expect(user_error).to_contain_text("user name", timeout=T)

    # Fixing the room clears its error as the user types.
    await room_input.fill("general")
    await expect(room_error).to_have_text("", timeout=T)
    # A valid form joins (the gateway accepts any script's letters, as the page does);
    # Enter in a field submits the form. This is the page's first socket.
    await user_input.fill("Zoë O'Brien-2")
    await expect(user_error).to_have_text("", timeout=T)
    await user_input.press("Enter")
    await expect(chat.by_id("status")).to_have_attribute("data-state", "connected", timeout=T)
    await expect(chat.entries("serverSystemMessage")).to_have_text(
        ["Welcome Zoë O'Brien-2 to room 'general'!"], timeout=T
    )
    assert len(chat.websockets) == 1


HOSTILE = (
    "<img src=x onerror=window.__xss=1><script>window.__xss=2</script>"
    "</div><b>bold?</b> &lt;i&gt; & \"quotes\" 'too'"
)


async def test_hostile_text_is_shown_as_text(gateway: LiveServer, open_page: OpenPage) -> None:
    alice = await open_page(gateway)
    bob = await open_page(gateway)
    await alice.join_and_wait("xss", "Alice")
    await bob.join_and_wait("xss", "Bob")

    await alice.by_id("message-input").fill(HOSTILE)
    await alice.by_id("send-button").click()
    for chat in (alice, bob):
        await expect_chat(chat, [f"Alice: {HOSTILE}"])
        texts = await chat.chat_lines().all_text_contents()
        assert texts == [f"Alice: {HOSTILE}"]
        log = chat.by_id("messages")
        await expect(log.locator("img, script, b, i")).to_have_count(0, timeout=T)
        assert await chat.page.evaluate("typeof window.__xss") == "undefined"


async def test_server_shutdown_shows_disconnected_then_reconnects(open_page: OpenPage) -> None:
    async with serve_on_port() as server:
        chat = await open_page(server)
        await chat.join_and_wait("ops", "Alice")
        port = server.port
    # The gateway stopped: it closed the socket with 1012 (service restart). The
    # page says it is reconnecting, and the composer stays usable: what is typed
    # now waits for the connection.
    status = chat.by_id("status")
    await expect(status).to_have_attribute("data-state", "reconnecting", timeout=T)
    await expect(status).to_contain_text("disconnected (code 1012)", timeout=T)
    await expect(status).to_contain_text("reconnecting in", timeout=T)
    await expect(chat.by_id("message-input")).to_be_enabled(timeout=T)
    await expect(chat.by_id("send-button")).to_be_enabled(timeout=T)

    # Back on the same port: the page reconnects by itself and works again.
    async with serve_on_port(port):
        await expect(status).to_have_attribute("data-state", "connected", timeout=timeout_ms(15))
        await expect(status).to_have_text("connected", timeout=T)
        welcome = "Welcome Alice to room 'ops'!"
        await expect(chat.entries("serverSystemMessage")).to_have_text(
            [welcome, welcome], timeout=T
        )
        await chat.by_id("message-input").fill("back again")
        await chat.by_id("message-input").press("Enter")
        await expect_chat(chat, ["Alice: back again"])


async def test_a_refused_handshake_is_final(gateway: LiveServer, open_page: OpenPage) -> None:
    # Development auth knows no tokens: the gateway refuses the handshake (HTTP 403).
    chat = await open_page(gateway)
    await chat.by_id("token-toggle").click()
    await chat.by_id("token-input").fill("not.a.jwt")
    await chat.join("general", "")
    status = chat.by_id("status")
    await expect(status).to_have_text(
        "disconnected (code 1006) — rejected: check your name / token", timeout=T
    )
    await expect(status).to_have_attribute("data-state", "closed", timeout=T)
    await expect(chat.by_id("user-label")).to_have_text("token user", timeout=T)
    await expect(chat.by_id("message-input")).to_be_disabled(timeout=T)
    assert len(chat.websockets) == 1
