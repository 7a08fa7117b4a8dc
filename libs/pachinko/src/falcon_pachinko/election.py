"""``Election``: one task performing a :class:`~falcon_pachinko.leadership.Leadership`'s steps.

The adapter of the lease rules (they live in :mod:`falcon_pachinko.leadership`):
it reads and writes the lease through a :class:`LeaseStore` (JetStream KV:
:class:`falcon_pachinko.backends.nats.KvLease`), sleeps until the next step is
due, and reports each change of role once, in order, to ``on_change``.

:attr:`Election.active` is the answer to ask right before acting: it applies the
holder's own deadline at that moment, so a holder whose renewal hangs stops
acting in time even while the write is still in flight.

Failures: a store that raises :class:`~falcon_pachinko.BackendError` is "no
answer" to the rules; an ``on_change`` that raises is logged, and the role still
changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from .errors import BackendError
from .leadership import Leadership, Lease, Read

__all__ = ["Election", "LeaseStore"]

log = structlog.get_logger(__name__)


class LeaseStore(Protocol):
    """Where a lease is kept: one key with compare-and-set writes."""

    async def read(self) -> Lease:
        """The key now. Raises :class:`~falcon_pachinko.BackendError` if no answer."""
        ...

    async def write(self, holder: str, after: int) -> int | None:
        """Write ``holder`` if the key's revision is still ``after``: the new revision,
        or ``None`` if another write came first."""
        ...

    async def release(self, after: int) -> None:
        """Leave the key vacant if its revision is still ``after``."""
        ...


class Election:
    """Run for a lease; hold it while alive; let it go at :meth:`stop`.

    Args:
        store: The lease.
        name: This replica's name (unique per process).
        ttl_s: See :class:`~falcon_pachinko.leadership.Leadership`.
        on_change: Called with ``True`` when this replica became active and
            ``False`` when it stopped being active.
        on_holder_alive: Called with the time another holder was seen renewing.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        store: LeaseStore,
        name: str,
        *,
        ttl_s: float,
        on_change: Callable[[bool], Awaitable[None]] | None = None,
        on_holder_alive: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.name = name
        self._clock = clock
        self.leadership = Leadership(name, ttl_s=ttl_s, now=clock())
        self.on_change = on_change
        self.on_holder_alive = on_holder_alive
        self._reported = False
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """Whether this replica holds the lease now (its own deadline applied)."""
        self.leadership.tick(self._clock())
        return self.leadership.active

    async def start(self) -> None:
        """Start running for the lease (the first read goes out at once)."""
        self._task = asyncio.create_task(self._run(), name="pachinko-election")

    async def stop(self, *, release: bool = True) -> None:
        """Stop; if holding the lease and ``release``, leave it vacant for a standby."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        revision = self.leadership.release()
        if revision is not None and release:
            try:
                await self.store.release(revision)
            except BackendError as exc:
                log.warning("pachinko.lease_not_released", error=str(exc))
            else:
                log.info("pachinko.lease_released", name=self.name)
        await self._report()

    async def _run(self) -> None:
        lead = self.leadership
        while True:
            step = lead.step(self._clock())
            await self._report()
            if step is None:
                await asyncio.sleep(lead.due_in(self._clock()))
                continue
            try:
                if isinstance(step, Read):
                    lease = await self.store.read()
                    if lead.read(lease, self._clock()) and self.on_holder_alive is not None:
                        self.on_holder_alive(self._clock())
                else:
                    revision = await self.store.write(self.name, step.after)
                    if revision is None:
                        lead.refused(self._clock())
                    else:
                        lead.wrote(revision, self._clock())
            except BackendError as exc:
                log.debug("pachinko.lease_store_unavailable", error=str(exc))
                lead.failed(self._clock())
            await self._report()

    async def _report(self) -> None:
        active = self.active
        if active == self._reported:
            return
        self._reported = active
        log.info("pachinko.lease_" + ("acquired" if active else "lost"), name=self.name)
        if self.on_change is None:
            return
        try:
            await self.on_change(active)
        except Exception:
            log.exception("pachinko.lease_on_change_failed")
