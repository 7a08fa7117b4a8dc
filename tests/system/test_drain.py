"""A rolling update of a gateway, with real processes: nothing lost, no one announced.

Clients on gateway A, chat going on through gateway B. A gets SIGTERM: it stops
being ready, refuses new handshakes, and closes its clients with 1012 spread over
``CHAT_DRAIN_S``; each client reconnects to B with ``since`` and sees every
message exactly once, and the room hears of no one leaving or joining.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from chat_client import Backoff, ChatClient, Joined, Left, Message, Status
from falcon_pachinko.testing import connect, scaled

from .cluster import Cluster, http_status

pytestmark = pytest.mark.system

BOUND_S = scaled(30.0)
DRAIN_S = 2.0
CLIENTS = 6


async def test_a_drained_gateway_loses_no_message_and_announces_no_one(chat: Cluster) -> None:
    await chat.rooms()
    a = await chat.gateway(CHAT_DRAIN_S=str(DRAIN_S))
    b = await chat.gateway()
    url_a, url_b = f"ws://127.0.0.1:{a.port}", f"ws://127.0.0.1:{b.port}"
    quick = Backoff(base_s=0.05, cap_s=0.2)
    clients = [
        ChatClient([url_a, url_b], "general", user=f"user{i}", backoff=quick)
        for i in range(CLIENTS)
    ]
    for client in clients:
        await client.__aenter__()
    try:
        async with (
            ChatClient(url_b, "general", user="Sender") as sender,
            connect(chat.ws_url(b, "general", user="Watcher")) as watcher,
        ):
            await watcher.expect("serverHistory")
            texts = [f"m{n}" for n in range(30)]
            # Arrivals are announced in batches (CHAT_PRESENCE_BATCH_S, 50 ms): past
            # one, every join so far has been announced; what the watcher hears
            # after m0 is what the rolling update caused.
            await asyncio.sleep(scaled(0.3))
            await sender.send(texts[0])
            await sender.drain(BOUND_S)
            await watcher_until(watcher, texts[0])
            # Read every client's events as they come: when each is closed counts.
            readers = asyncio.gather(*(everything_until(c, texts[-1]) for c in clients))
            started = time.monotonic()
            assert a.proc is not None
            a.proc.send_signal(signal.SIGTERM)  # the drain, then uvicorn's shutdown
            async with asyncio.timeout(BOUND_S):  # readiness fails first
                while await asyncio.to_thread(http_status, a.port, "/readyz") == 200:
                    await asyncio.sleep(0.05)
            for text in texts[1:-5]:  # while A drains
                await sender.send(text)
            assert await a.wait_exit() == 0  # every client of A was closed by now
            stopped_after = time.monotonic() - started
            for text in texts[-5:]:
                await sender.send(text)
            await sender.drain(BOUND_S)
            seen = await readers
            await sender.send("marker")
            heard = await watcher_until(watcher, "marker")
    finally:
        for client in clients:
            await client.close()

    closes = sorted(t for events, t in seen)
    assert closes[-1] - closes[0] >= DRAIN_S / 3, f"closes not spread: {closes}"
    assert stopped_after >= DRAIN_S * 0.5
    for events, _ in seen:
        reconnects = [e for e in events if isinstance(e, Status) and e.state == "reconnecting"]
        assert reconnects and reconnects[0].code == 1012, reconnects
        got = [e.text for e in events if isinstance(e, Message)]
        assert got == texts, f"lost, repeated or out of order: {got}"
    assert not [m for m in heard if m.get("type") in ("serverUserLeft", "serverUserJoined")], heard


async def everything_until(client: ChatClient, last: str) -> tuple[list[Any], float]:
    """Every event until the message ``last``; and when the drain closed it."""
    events: list[Any] = []
    closed_at = 0.0
    async with asyncio.timeout(BOUND_S):
        while True:
            event = await client.next_event(BOUND_S)
            events.append(event)
            if isinstance(event, Status) and event.state == "reconnecting" and not closed_at:
                closed_at = time.monotonic()
            if isinstance(event, (Joined, Left)):
                continue
            if isinstance(event, Message) and event.text == last:
                return events, closed_at


async def watcher_until(watcher: Any, text: str) -> list[Any]:
    heard: list[Any] = []
    async with asyncio.timeout(BOUND_S):
        while True:
            message = await watcher.receive()
            heard.append(message)
            if message.get("type") == "serverNewMessage" and message["payload"]["text"] == text:
                return heard
