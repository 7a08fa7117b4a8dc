"""NatsProbe over a real nats-server: probes come back, and when they stop, it says so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from falcon_pachinko.backends.nats import NatsProbe
from falcon_pachinko.subjects import Subjects
from falcon_pachinko.testing import scaled

pytestmark = pytest.mark.integration

BOUND_S = scaled(5.0)
Cluster = Any  # conftest.Cluster


async def eventually(check: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(BOUND_S):
        while not check():
            await asyncio.sleep(0.02)


async def test_probes_come_back_and_a_lost_subscription_is_noticed(cluster: Cluster) -> None:
    nc = await cluster.client()
    rtts: list[float] = []
    probe = NatsProbe(
        nc, Subjects("chat"), "node-a", interval_s=0.2, timeout_s=0.1, on_return=rtts.append
    )
    await probe.start()
    try:
        await eventually(lambda: probe.schedule.returned >= 3, "three probes back")
        assert probe.hearing() and probe.subject == "chat._probe.node-a"
        assert len(rtts) >= 3 and all(0 <= rtt < 0.1 for rtt in rtts)
        assert probe.schedule.lost == 0

        # The process stops hearing its subject (a subscription the server lost).
        assert probe._sub is not None
        await probe._sub.unsubscribe()
        await eventually(lambda: not probe.hearing(), "hearing to end")
        assert probe.schedule.lost >= 2
    finally:
        await probe.stop()
    assert probe._task is None and probe._sub is None
