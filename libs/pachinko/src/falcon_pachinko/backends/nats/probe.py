"""``NatsProbe``: a process publishes to itself through NATS and times the return.

The adapter of :class:`falcon_pachinko.probe.ProbeSchedule` (the rules live
there): one subscription on ``<prefix>._probe.<node>``, on the connection the
process uses for everything else, and one task that sends a probe when the
schedule says so. While NATS is disconnected nothing is sent (the connection's
own state says what is wrong then); :meth:`NatsProbe.hearing` is what a
readiness check asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ...probe import ProbeSchedule
from ...subjects import Subjects
from .plumbing import UNAVAILABLE

__all__ = ["NatsProbe"]

log = structlog.get_logger(__name__)


class NatsProbe:
    """Probe this process's own NATS path every ``interval_s``.

    Args:
        client: The process's NATS client (connected; the caller owns it).
        subjects: The deployment's subject naming.
        node_id: This process's id (its probe subject is its own).
        interval_s: Between probes.
        timeout_s: A probe not back within this is lost.
        on_return: Called with each round trip, in seconds (a metric).
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        client: Client,
        subjects: Subjects,
        node_id: str,
        *,
        interval_s: float = 5.0,
        timeout_s: float = 2.0,
        on_return: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nc = client
        self.subject = subjects.probe(node_id)
        self._clock = clock
        self.schedule = ProbeSchedule(interval_s, timeout_s, clock())
        self._on_return = on_return
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Subscribe and start probing."""
        self._sub = await self._nc.subscribe(self.subject, cb=self._returned)
        self._task = asyncio.create_task(self._run(), name="pachinko-nats-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(*UNAVAILABLE, nats.errors.BadSubscriptionError):
                await sub.unsubscribe()

    def hearing(self) -> bool:
        """Whether a probe came back recently enough."""
        return self.schedule.hearing(self._clock())

    async def _run(self) -> None:
        while True:
            now = self._clock()
            if self.schedule.expire(now):
                log.warning("pachinko.probe_lost", subject=self.subject)
            if self._nc.is_connected and (token := self.schedule.send(now)) is not None:
                try:
                    await self._nc.publish(self.subject, str(token).encode())
                except (*UNAVAILABLE, nats.errors.Error):
                    log.info("pachinko.probe_not_sent")
            self._wake.clear()
            due = self.schedule.due_in(self._clock())
            if not self._nc.is_connected:
                due = max(due, self.schedule.timeout_s)  # nothing to send: no busy loop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, due)):
                    await self._wake.wait()

    async def _returned(self, msg: Msg) -> None:
        try:
            token = int(msg.data)
        except ValueError:
            return
        rtt = self.schedule.returned_probe(token, self._clock())
        if rtt is not None and self._on_return is not None:
            self._on_return(rtt)
        self._wake.set()
