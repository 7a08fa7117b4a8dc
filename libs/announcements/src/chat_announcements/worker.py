"""The announcement worker: the seed's hourly ``system_announcement_worker``, safe to replicate.

Schedule
    Periods are aligned to the Unix wall clock: period ``n`` covers
    ``[n * interval, (n + 1) * interval)``, so every replica computes the same period
    numbers without talking to the others. The worker sleeps until the next boundary
    (the first announcement comes at most one interval after start; with the default
    hour, at the top of every hour), claims the period that starts there, and
    announces only if the claim succeeded. A worker that wakes after its period has
    already ended (a stalled loop, a suspended VM) skips the missed periods instead
    of announcing in a burst. The decisions are pure functions of the clock
    (:func:`next_wake`, :func:`on_time`); the clock and ``sleep`` are injected.

Exactly one announcement per room per period
    The claim goes through a :class:`PeriodLease`. The JetStream KV lease
    (``chat_announcer.lease``, in the announcer service) grants each period to
    exactly one replica, however many run. A single process (the gateway without
    NATS) passes no lease and always announces. The period's key, not the time,
    decides who announces, so replica clocks need only agree to within the lease's
    retention.

Failure semantics: at most once
    A failure loses the period rather than risk a duplicate. Each case is logged;
    the first two are counted in ``chat_announcer_periods_skipped_total``:

    * the lease cannot be claimed (JetStream down, timeout): the period is skipped
      (``lease_unavailable``). A claim whose reply was lost may have succeeded, and
      then no replica announces that period;
    * the room directory does not answer (the rooms service is down): the claimed
      period is lost (``directory_unavailable``); no other replica retries it;
    * a replica dies between its claim and its broadcast: the period is lost; the
      next one goes to a survivor;
    * a broadcast to one room fails (the NATS client's buffer is full): that room
      misses the period, the others still get it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, NamedTuple, Protocol

import structlog

from chat_protocol.messages import ServerSystemAnnouncement, TextPayload
from falcon_pachinko import BackendError, worker

from .errors import LeaseUnavailable

__all__ = [
    "AlwaysLease",
    "AnnouncerMetrics",
    "PeriodLease",
    "RoomDirectory",
    "SkipReason",
    "Wake",
    "announce_once",
    "announcement_worker",
    "next_wake",
    "on_time",
]

log = structlog.get_logger(__name__)

SkipReason = Literal["claimed_elsewhere", "lease_unavailable", "directory_unavailable"]


class RoomDirectory(Protocol):
    """What the worker needs of a connection manager."""

    async def get_rooms_by_prefix(self, prefix: str) -> list[str]: ...

    async def broadcast_to_room(self, room: str, message: object) -> None: ...


class PeriodLease(Protocol):
    """Grants each period to at most one claimant."""

    def claim(self, period: int) -> Awaitable[bool]:
        """Try to claim ``period``.

        Returns:
            ``True`` if this caller now holds the period, ``False`` if another did.

        Raises:
            LeaseUnavailable: Nobody can tell (the store did not answer).
        """
        ...


class AnnouncerMetrics(Protocol):
    """What the worker reports (the announcer's Prometheus ``chat_announcer.metrics.Metrics``)."""

    def claimed(self) -> None: ...

    def skipped(self, reason: SkipReason) -> None: ...

    def announced(self, rooms: int) -> None: ...


class AlwaysLease:
    """Every period is ours: the lease of a single process."""

    async def claim(self, period: int) -> bool:
        return True


class _NoMetrics:
    def claimed(self) -> None:
        pass

    def skipped(self, reason: SkipReason) -> None:
        pass

    def announced(self, rooms: int) -> None:
        pass


# -- the schedule (pure) -------------------------------------------------------


class Wake(NamedTuple):
    """When to wake, and the period that starts then."""

    period: int
    at: float


def next_wake(now: float, interval_s: float, after: int | None = None) -> Wake:
    """The first period boundary strictly after ``now``, for a period after ``after``.

    Args:
        now: Unix time.
        interval_s: Period length.
        after: The last period already handled; the result is always later, even if
            the clock stepped back or rounding put ``now`` a hair before a boundary.
    """
    period = math.floor(now / interval_s) + 1
    if after is not None and period <= after:
        period = after + 1
    return Wake(period, period * interval_s)


def on_time(wake: Wake, now: float, interval_s: float) -> bool:
    """Whether ``wake.period`` is still running at ``now``.

    A worker that wakes after its period ended was stalled; announcing then would
    bunch announcements together, so the period is skipped instead.
    """
    return now < (wake.period + 1) * interval_s


# -- the adapter ------------------------------------------------------------------


async def announce_once(conn_mgr: RoomDirectory, text: str, room_prefix: str) -> int:
    """Send ``text`` to every room whose name starts with ``room_prefix``.

    The message is built once; the manager encodes it once per room.

    Returns:
        How many rooms were sent the announcement.

    Raises:
        falcon_pachinko.BackendError: The room directory did not answer.
    """
    message = ServerSystemAnnouncement(payload=TextPayload(text=text))
    rooms = await conn_mgr.get_rooms_by_prefix(room_prefix)
    return await _broadcast(conn_mgr, rooms, message)


async def _broadcast(
    conn_mgr: RoomDirectory, rooms: Sequence[str], message: ServerSystemAnnouncement
) -> int:
    sent = 0
    for room in rooms:
        try:
            await conn_mgr.broadcast_to_room(room, message)
        except BackendError:
            continue  # counted below; one room's failure must not cost the others
        sent += 1
    if sent < len(rooms):
        log.warning("announcer.broadcast_failed", rooms=len(rooms) - sent)
    return sent


@worker(name="announcer", restart=True, restart_delay_s=1.0)
async def announcement_worker(
    conn_mgr: RoomDirectory,
    *,
    interval_s: float,
    text: str,
    room_prefix: str = "",
    lease: PeriodLease | None = None,
    metrics: AnnouncerMetrics | None = None,
    wall_clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Announce once per wall-clock-aligned period, forever (see the module docstring).

    Args:
        conn_mgr: Lists rooms and broadcasts to them.
        interval_s: Period length in seconds.
        text: The announcement.
        room_prefix: Only rooms whose name starts with this; ``""`` for all.
        lease: Decides which replica announces a period; ``None`` always announces.
        metrics: Told about claims, skips and announcements.
        wall_clock: Unix time (``time.time``); every replica must use the same epoch.
        sleep: ``asyncio.sleep`` (injected in tests).

    Raises:
        ValueError: ``interval_s`` is not positive.
    """
    if not interval_s > 0:
        raise ValueError("interval_s must be positive")
    lease = lease if lease is not None else AlwaysLease()
    metrics = metrics if metrics is not None else _NoMetrics()
    message = ServerSystemAnnouncement(payload=TextPayload(text=text))
    last: int | None = None
    while True:
        wake = next_wake(wall_clock(), interval_s, after=last)
        # Loop: a wall clock stepped back (or a coarse timer) can wake us early.
        while (delay := wake.at - wall_clock()) > 0:
            await sleep(delay)
        last = wake.period
        now = wall_clock()
        if not on_time(wake, now, interval_s):
            log.warning("announcer.periods_missed", period=wake.period, late_s=now - wake.at)
            continue
        try:
            await _run_period(wake.period, conn_mgr, message, room_prefix, lease, metrics)
        except Exception:
            # A bug must cost one period, not every later one.
            log.exception("announcer.failed", period=wake.period)


async def _run_period(
    period: int,
    conn_mgr: RoomDirectory,
    message: ServerSystemAnnouncement,
    room_prefix: str,
    lease: PeriodLease,
    metrics: AnnouncerMetrics,
) -> None:
    if not await _claim(lease, period, metrics):
        return
    try:
        rooms = await conn_mgr.get_rooms_by_prefix(room_prefix)
    except BackendError as exc:
        log.warning("announcer.directory_unavailable", period=period, error=str(exc))
        metrics.skipped("directory_unavailable")
        return
    sent = await _broadcast(conn_mgr, rooms, message)
    metrics.announced(sent)
    log.info("announcer.announced", period=period, rooms=sent)


async def _claim(lease: PeriodLease, period: int, metrics: AnnouncerMetrics) -> bool:
    try:
        claimed = await lease.claim(period)
    except LeaseUnavailable as exc:
        log.warning("announcer.lease_unavailable", period=period, error=str(exc))
        metrics.skipped("lease_unavailable")
        return False
    except Exception:
        log.exception("announcer.lease_unavailable", period=period)
        metrics.skipped("lease_unavailable")
        return False
    if not claimed:
        log.debug("announcer.claimed_elsewhere", period=period)
        metrics.skipped("claimed_elsewhere")
        return False
    metrics.claimed()
    return True
