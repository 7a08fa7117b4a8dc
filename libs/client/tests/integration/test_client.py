"""ChatClient against a real gateway (uvicorn, the chat's app, its production options)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chat_client import (
    Backoff,
    ChatClient,
    ChatClosed,
    HistoryDone,
    Joined,
    Left,
    Message,
    Roster,
    Status,
)
from chat_client.terminal import run as run_terminal
from chat_gateway.app import create_app
from chat_gateway.server import uvicorn_options
from chat_gateway.settings import load_settings
from falcon_pachinko.testing import LiveServer, scaled, serve

pytestmark = pytest.mark.integration

BOUND_S = scaled(10.0)
E = TypeVar("E")


class FixedBackoff(Backoff):
    """Waits exactly ``delay_s`` before every reconnect: time for the test to act."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def next_delay(self, retry_after_s: float | None = None) -> float:
        return self.delay_s


@pytest.fixture
async def gateway() -> AsyncIterator[Callable[..., Awaitable[LiveServer]]]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(**env: str) -> LiveServer:
            settings = load_settings({"CHAT_AUTH": "dev", "CHAT_ANNOUNCE_INTERVAL_S": "0", **env})
            options = {**uvicorn_options(settings), "port": 0}
            return await stack.enter_async_context(serve(create_app(settings), **options))

        yield start


def base_url(server: LiveServer) -> str:
    return f"ws://{server.host}:{server.port}"


async def until(client: ChatClient, kind: type[E], what: str, **fields: Any) -> E:
    """The next event of ``kind`` with ``fields``; others are skipped."""
    try:
        async with asyncio.timeout(BOUND_S):
            while True:
                event = await client.next_event(BOUND_S)
                if isinstance(event, kind) and all(
                    getattr(event, k) == v for k, v in fields.items()
                ):
                    return event
    except TimeoutError:
        raise AssertionError(f"no {what} within {BOUND_S:.0f}s") from None


async def messages_until(client: ChatClient, last_text: str) -> list[Message]:
    """Every message event up to the one with ``last_text``."""
    seen: list[Message] = []
    async with asyncio.timeout(BOUND_S):
        while True:
            event = await client.next_event(BOUND_S)
            if isinstance(event, Message):
                seen.append(event)
                if event.text == last_text:
                    return seen


async def test_two_clients_see_each_other_and_chat(gateway: Any) -> None:
    url = base_url(await gateway())
    async with ChatClient(url, "general", user="Ann") as ann:
        assert await until(ann, Roster, "Ann's roster") == Roster(("Ann",))
        async with ChatClient(url, "general", user="Bob") as bob:
            assert await until(bob, Roster, "Bob's roster") == Roster(("Ann", "Bob"))
            await until(ann, Joined, "Bob joining", user="Bob")
            await bob.send("hello")
            await bob.drain(BOUND_S)
            echo = await until(bob, Message, "Bob's echo", text="hello")
            assert echo.mine and echo.seq is not None and echo.ts is not None
            heard = await until(ann, Message, "Bob's message", text="hello")
            assert (heard.user, heard.mine, heard.id) == ("Bob", False, echo.id)
            assert ann.state.users == {"Ann", "Bob"}
        await until(ann, Left, "Bob leaving", user="Bob")
        assert ann.state.users == {"Ann"}


async def test_a_lost_connection_resumes_with_what_was_missed_once(gateway: Any) -> None:
    url = base_url(await gateway())
    async with (
        ChatClient(url, "general", user="Ann", backoff=FixedBackoff(scaled(3.0))) as ann,
        ChatClient(url, "general", user="Bob") as bob,
    ):
        await bob.send("before")
        await until(ann, Message, "the first message", text="before")
        # A send whose echo is lost with the connection, then the cut itself.
        await ann.send("racing the cut")
        assert ann._ws is not None
        ann._ws.transport.abort()
        status = await until(ann, Status, "the reconnect", state="reconnecting")
        assert status.code == 1006
        await ann.send("typed while away")
        for text in ("missed 1", "missed 2"):
            await bob.send(text)
        await bob.drain(BOUND_S)
        await ann.drain(BOUND_S)  # reconnected, resumed, and what was typed echoed
        await bob.send("after")
        ann_saw = [m.text for m in await messages_until(ann, "after")]
        bob_saw = [m.text for m in await messages_until(bob, "after")]
    # The racing send may have reached the gateway before the cut (then Ann saw it
    # in the resume) or not (then it was sent again): either way, once.
    assert ann_saw.count("racing the cut") == 1, ann_saw
    assert [t for t in ann_saw if t != "racing the cut"] == [
        "missed 1",
        "missed 2",
        "typed while away",
        "after",
    ]
    assert bob_saw.count("racing the cut") == 1 and bob_saw.count("typed while away") == 1


async def test_a_refused_handshake_is_final(gateway: Any) -> None:
    url = base_url(await gateway())
    with pytest.raises(ChatClosed) as refused:
        async with ChatClient(url, "general", user="not/a name"):
            pass
    assert refused.value.status == Status("closed", 403, refused.value.status.reason)


async def test_a_final_close_ends_the_client(gateway: Any) -> None:
    url = base_url(await gateway(CHAT_WS_MAX_BYTES="16384"))
    async with ChatClient(url, "general", user="Ann") as ann:
        assert ann._ws is not None
        await ann._ws.send("x" * 20_000)  # past the frame limit: 1009, not to be retried
        status = await until(ann, Status, "the close", state="closed")
        assert status.code == 1009
        with pytest.raises(ChatClosed):
            await ann.next_event(BOUND_S)
        assert ann.ended


async def test_the_terminal_client_sends_prints_and_exits_after_its_echoes(gateway: Any) -> None:
    url = base_url(await gateway())
    async with ChatClient(url, "general", user="Ann") as ann:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        argv = [sys.executable, "-m", "chat_launcher", "client", "--url", url]
        argv += ["--room", "general", "--user", "Script"]
        done = await asyncio.to_thread(
            subprocess.run,
            argv,
            input="hello from a script\n/who\n\nbye\n",
            capture_output=True,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parents[4],
            timeout=BOUND_S * 3,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert any(line.endswith("] Script: hello from a script") for line in lines), lines
        assert any(line.endswith("] Script: bye") for line in lines), lines
        assert "-- here: Ann, Script" in lines
        assert lines[0].startswith("-- Welcome Script")
        for text in ("hello from a script", "bye"):
            await until(ann, Message, f"the script's {text!r}", text=text, user="Script")


async def test_a_resend_after_the_dedup_window_is_not_a_second_copy(gateway: Any) -> None:
    # The gateway forgets keys after half a second; Ann comes back later than that.
    url = base_url(await gateway(CHAT_HISTORY_DEDUP_WINDOW_S="0.5"))
    async with (
        ChatClient(url, "general", user="Ann", backoff=FixedBackoff(1.0)) as ann,
        ChatClient(url, "general", user="Bob") as bob,
    ):
        await ann.send("said once")
        assert ann._ws is not None
        ann._ws.transport.abort()  # before the echo can arrive
        await until(ann, Status, "the reconnect", state="reconnecting")
        await until(ann, Status, "the new connection", state="connected")
        await ann.drain(BOUND_S)
        await bob.send("marker")
        bob_saw = [m.text for m in await messages_until(bob, "marker")]
    assert bob_saw.count("said once") == 1, bob_saw
    async with ChatClient(url, "general", user="Cat") as cat:
        page = []
        while not page or not isinstance(page[-1], HistoryDone):
            page.append(await cat.next_event(BOUND_S))
        stored = [e.text for e in page if isinstance(e, Message)]
    assert stored.count("said once") == 1, stored


async def test_a_url_that_is_no_websocket_url_ends_the_client_at_once() -> None:
    with pytest.raises(ChatClosed, match="not a WebSocket URL"):
        async with asyncio.timeout(BOUND_S):
            async with ChatClient("http://127.0.0.1:1", "general", user="Ann"):
                pass


async def test_a_failing_token_source_is_retried(gateway: Any) -> None:
    url = base_url(await gateway())
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        raise RuntimeError("the identity provider is away")

    client = ChatClient(url, "general", token=token, backoff=FixedBackoff(0.05))
    client.start()
    try:
        first = await until(client, Status, "a retry", state="reconnecting")
        assert "could not get a token" in first.reason
        await until(client, Status, "a second retry", state="reconnecting")
        assert calls >= 2 and not client.ended
    finally:
        await client.close()


async def test_the_terminal_client_exits_1_when_the_chat_ends_it(gateway: Any) -> None:
    url = base_url(await gateway(CHAT_WS_MAX_BYTES="16384"))
    client = ChatClient(url, "general", user="Script")
    out, err = io.StringIO(), io.StringIO()

    async def lines() -> AsyncIterator[str]:
        yield "hello"
        await client.drain(BOUND_S)
        assert client._ws is not None
        await client._ws.send("x" * 20_000)  # past the frame limit: 1009, final
        await client.wait_ended()
        yield "never sent"

    code = await asyncio.wait_for(run_terminal(client, lines(), out, err), BOUND_S)
    assert code == 1, err.getvalue()
    assert "] Script: hello" in out.getvalue()
    assert "never sent" not in out.getvalue()
