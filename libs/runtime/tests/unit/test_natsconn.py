"""What the NATS connection does on a reconnect, without a server."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from chat_runtime.natsconn import NatsConnection

BOUND_S = 2.0


async def test_reconnect_callbacks_run_outside_the_reconnect_and_again_if_needed() -> None:
    conn = NatsConnection("test", CollectorRegistry())
    started = asyncio.Event()
    release = asyncio.Event()
    rounds = 0

    async def recheck() -> None:
        nonlocal rounds
        rounds += 1
        started.set()
        await release.wait()

    conn.on_reconnected.append(recheck)
    async with asyncio.timeout(BOUND_S):
        await conn._on_reconnected()  # returns at once: nats-py's reconnect goes on
        await started.wait()
        await conn._on_reconnected()  # a second reconnect during the first round
        await conn._on_reconnected()  # ... and a third: still one more round only
        assert rounds == 1
        release.set()
        await conn.reconnected_done()
    assert rounds == 2


async def test_a_failing_reconnect_callback_does_not_stop_the_others() -> None:
    conn = NatsConnection("test", CollectorRegistry())
    ran: list[str] = []

    async def broken() -> None:
        ran.append("broken")
        raise RuntimeError("boom")

    async def fine() -> None:
        ran.append("fine")

    conn.on_reconnected += [broken, fine]
    async with asyncio.timeout(BOUND_S):
        await conn._on_reconnected()
        await conn.reconnected_done()
    assert ran == ["broken", "fine"]
