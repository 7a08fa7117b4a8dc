"""chat_client across real processes: a gateway restart loses nothing and repeats nothing.

nats-server with JetStream, chat-rooms and two chat-gateways as processes. A
client on the first gateway sees it shut down (1012), keeps what its user types,
reconnects with back-off when the gateway is back on the same port, resumes with
``since`` and shows every message sent meanwhile on the other gateway exactly
once; what it typed while away is stored once.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import pytest

from chat_client import Backoff, ChatClient, HistoryDone, Message, Status
from falcon_pachinko.testing import scaled

from .cluster import Cluster, Service, free_port

pytestmark = pytest.mark.system

BOUND_S = scaled(20.0)
E = TypeVar("E")


async def until(client: ChatClient, kind: type[E], what: str, **fields: Any) -> E:
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


async def events_until(client: ChatClient, last: str | Status) -> list[Any]:
    """Every event up to the message with text ``last`` (or the status ``last``)."""
    seen: list[Any] = []

    def done() -> bool:
        if not seen:
            return False
        if isinstance(last, Status):
            return seen[-1] == last
        return isinstance(seen[-1], Message) and seen[-1].text == last

    async with asyncio.timeout(BOUND_S):
        while not done():
            seen.append(await client.next_event(BOUND_S))
    return seen


def texts(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, Message)]


def url(gateway: Service) -> str:
    return f"ws://127.0.0.1:{gateway.port}"


async def test_a_client_resumes_across_a_gateway_restart_with_every_message_once(
    chat: Cluster,
) -> None:
    await chat.rooms()
    port = free_port()
    first = await chat.start("gateway", "chat_gateway", CHAT_PORT=str(port))
    second = await chat.gateway()
    quick = Backoff(base_s=0.2, cap_s=1.0)
    async with (
        ChatClient(url(first), "general", user="Ann", backoff=quick) as ann,
        ChatClient(url(second), "general", user="Bob") as bob,
    ):
        await bob.send("before")
        await until(ann, Message, "the first message", text="before")

        await first.stop()  # SIGTERM: clients get 1012 and may come back
        status = await until(ann, Status, "the restart close", state="reconnecting")
        assert status.code == 1012
        await ann.send("typed while the gateway was down")
        for text in ("missed 1", "missed 2", "missed 3"):
            await bob.send(text)
        await bob.drain(BOUND_S)

        await first.start()  # the same port: Ann's next attempt gets in
        ann_events = await events_until(ann, Status("connected"))
        await ann.drain(BOUND_S)
        await bob.send("after")
        ann_events += await events_until(ann, "after")
        bob_saw = texts(await events_until(bob, "after"))
    assert [e.resumed for e in ann_events if isinstance(e, HistoryDone)] == [True]
    assert texts(ann_events) == [
        "missed 1",
        "missed 2",
        "missed 3",
        "typed while the gateway was down",
        "after",
    ]
    assert bob_saw.count("typed while the gateway was down") == 1
