"""``PresenceBatcher``: presence changes passed on in batches while they come fast.

An announced arrival costs one frame per member of the room, and a frame written
to a socket on its own costs a system call. When many people join a room at once
(a reconnect storm, a class starting), every arrival would reach every member in
a write of its own: O(room size) system calls per join. The batcher holds the
changes that follow one another within ``window_s`` and passes them on together,
in one event-loop turn, so each member's frames of one batch go out in one write.

Rules:

* every change is passed on exactly once, in the order it was given;
* a change that comes after a quiet ``window_s`` is passed on at once (on the
  next event-loop turn): presence news is late by at most ``window_s``, and only
  while changes come faster than that;
* a handler that fails is logged; the changes after it are still passed on;
* ``after_batch``, if given, is called with each batch once all of it was passed
  on (the directory tells its standbys what it reported);
* :meth:`PresenceBatcher.close` passes on what is held, and stops.

It is an adapter (it owns one task); the decisions it passes on are made by the
pure :class:`~falcon_pachinko.presence.PresenceTracker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from .presence import PresenceChange, PresenceHandler

__all__ = ["PresenceBatcher"]

log = structlog.get_logger(__name__)


class PresenceBatcher:
    """A :data:`~falcon_pachinko.presence.PresenceHandler` that passes changes on in batches.

    Use it where a handler is expected (``manager.on_presence``,
    ``Directory.on_presence``)::

        batcher = PresenceBatcher(announce, window_s=0.05)
        directory.on_presence = batcher
        ...
        await batcher.close()

    Args:
        handler: Called with each change, in order.
        window_s: Changes within this long of the last batch wait for the next
            one; 0 passes each change on as it comes (as ``handler`` itself would).
        clock: Monotonic seconds (injected in tests).
        after_batch: Called with each batch after its changes were passed on.

    Raises:
        ValueError: ``window_s`` is negative.
    """

    def __init__(
        self,
        handler: PresenceHandler,
        *,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        after_batch: Callable[[list[PresenceChange]], Awaitable[None]] | None = None,
    ) -> None:
        if window_s < 0:
            raise ValueError("window_s must not be negative")
        self._handler = handler
        self._after_batch = after_batch
        self._window_s = window_s
        self._clock = clock
        self._held: list[PresenceChange] = []
        self._task: asyncio.Task[None] | None = None
        #: When the last batch was passed on (``None``: never).
        self._last: float | None = None
        self._closed = False
        self._wake = asyncio.Event()  # set by close: held changes wait no more

    async def __call__(self, change: PresenceChange) -> None:
        """Take ``change``; it is passed on with its batch, never inside this call."""
        if self._closed or self._window_s == 0:
            await self._pass_on([change])  # nothing is held once closed
            return
        self._held.append(change)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pachinko-presence-batcher")

    @property
    def held(self) -> int:
        """Changes taken and not yet passed on."""
        return len(self._held)

    async def close(self) -> None:
        """Pass on every change held now, then pass later ones on one by one. Idempotent."""
        self._closed = True
        self._wake.set()
        task = self._task
        if task is not None:
            await task  # it passes on what is held, at once, and ends
        await self._pass_on(self._take())

    async def _run(self) -> None:
        try:
            while self._held:
                wait = self._due() - self._clock()
                if wait > 0 and not self._closed:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
                await self._pass_on(self._take())
        finally:
            self._task = None

    def _due(self) -> float:
        last = self._last
        return float("-inf") if last is None else last + self._window_s

    def _take(self) -> list[PresenceChange]:
        batch, self._held = self._held, []
        if batch:
            self._last = self._clock()
        return batch

    async def _pass_on(self, batch: list[PresenceChange]) -> None:
        for change in batch:
            try:
                await self._handler(change)
            except Exception:
                log.exception("pachinko.presence_handler_failed", present=change.present)
        if batch and self._after_batch is not None:
            try:
                await self._after_batch(batch)
            except Exception:
                log.exception("pachinko.presence_after_batch_failed")
