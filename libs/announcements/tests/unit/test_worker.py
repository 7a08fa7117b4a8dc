"""The announcement worker with a fake wall clock, sleep, lease, directory and metrics.

Nothing sleeps: ``sleep(d)`` moves the fake clock forward by ``d`` (plus an optional
stall) and, after a set number of calls, ends the run by raising ``Stop``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest
import structlog.testing

from chat_announcements.errors import LeaseUnavailable
from chat_announcements.worker import (
    AlwaysLease,
    SkipReason,
    Wake,
    announcement_worker,
    next_wake,
    on_time,
)
from chat_protocol.messages import ServerSystemAnnouncement
from falcon_pachinko import BackendError

START = 1_700_000_000.3  # an arbitrary Unix time, off every boundary used below
TEXT = "Maintenance at 2 AM UTC."


class Stop(Exception):
    """Ends a worker run after the planned number of sleeps."""


class FakeTime:
    """A wall clock and a ``sleep`` that advances it.

    Args:
        start: Initial Unix time.
        sleeps: How many sleeps complete before the next one raises :class:`Stop`.
        stalls: Extra seconds added to the n-th sleep (0-based), as a blocked loop would.
    """

    def __init__(self, start: float, sleeps: int, stalls: dict[int, float] | None = None) -> None:
        self.now = start
        self.sleeps = sleeps
        self.stalls = stalls or {}
        self.woke_at: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        assert delay > 0
        if len(self.woke_at) == self.sleeps:
            raise Stop
        self.now += delay + self.stalls.get(len(self.woke_at), 0.0)
        self.woke_at.append(self.now)


class FakeLease:
    """Answers claims from ``results`` (cycled through by period order); records them."""

    def __init__(self, *results: bool | BaseException) -> None:
        self.results = list(results) or [True]
        self.claims: list[int] = []

    async def claim(self, period: int) -> bool:
        result = self.results[len(self.claims) % len(self.results)]
        self.claims.append(period)
        if isinstance(result, BaseException):
            raise result
        return result


class FakeRooms:
    """A connection manager: ``rooms`` are listed (filtered by prefix), broadcasts recorded.

    ``failures`` lists, per query, an exception to raise instead of answering.
    """

    def __init__(
        self,
        rooms: Iterable[str] = ("team-a", "team-b", "lobby"),
        failures: Iterable[BaseException | None] = (),
        broken_rooms: Iterable[str] = (),
    ) -> None:
        self.rooms = list(rooms)
        self.failures = list(failures)
        self.broken_rooms = set(broken_rooms)
        self.queries: list[str] = []
        self.sent: list[tuple[int, str, Any]] = []  # (query number, room, message)

    async def get_rooms_by_prefix(self, prefix: str) -> list[str]:
        self.queries.append(prefix)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return [room for room in self.rooms if room.startswith(prefix)]

    async def broadcast_to_room(self, room: str, message: object) -> None:
        if room in self.broken_rooms:
            raise BackendError("NATS is unavailable; the message was not sent")
        self.sent.append((len(self.queries), room, message))


async def run(
    clock: FakeTime,
    rooms: FakeRooms,
    *,
    interval_s: float = 1.0,
    room_prefix: str = "",
    **options: Any,
) -> None:
    with pytest.raises(Stop):
        await announcement_worker(
            rooms,
            interval_s=interval_s,
            text=TEXT,
            room_prefix=room_prefix,
            wall_clock=clock,
            sleep=clock.sleep,
            **options,
        )


class FakeMetrics:
    """Records what the worker reports (an ``AnnouncerMetrics``)."""

    def __init__(self) -> None:
        self.claims = 0
        self.skips: Counter[SkipReason] = Counter()
        self.sent = 0

    def claimed(self) -> None:
        self.claims += 1

    def skipped(self, reason: SkipReason) -> None:
        self.skips[reason] += 1

    def announced(self, rooms: int) -> None:
        self.sent += rooms


# -- the schedule ----------------------------------------------------------------


@pytest.mark.parametrize(
    "interval_s",
    [
        pytest.param(0.25, id="quarter-second"),
        pytest.param(0.5, id="half-second"),
        pytest.param(1.0, id="second"),
        pytest.param(7.5, id="seven-and-a-half"),
        pytest.param(3600.0, id="hour"),
    ],
)
async def test_sleeps_end_exactly_on_period_boundaries(interval_s: float) -> None:
    clock = FakeTime(START, sleeps=4)
    lease = FakeLease(True)
    await run(clock, FakeRooms(), interval_s=interval_s, lease=lease)

    first = math.floor(START / interval_s) + 1
    assert clock.woke_at == [(first + i) * interval_s for i in range(4)]
    assert all((t / interval_s).is_integer() for t in clock.woke_at)
    assert 0 < clock.woke_at[0] - START <= interval_s  # at most one interval after start
    assert lease.claims == [first + i for i in range(4)]


def test_the_default_hour_announces_at_the_top_of_the_hour() -> None:
    wake = next_wake(START, 3600.0)
    assert wake.at % 3600 == 0 and 0 < wake.at - START <= 3600


def test_a_start_exactly_on_a_boundary_waits_for_the_next_one() -> None:
    assert next_wake(10.0, 0.5) == Wake(21, 10.5)


def test_next_wake_never_repeats_a_handled_period() -> None:
    # The wall clock stepped back: the next wake is still after the last period.
    assert next_wake(100.2, 1.0, after=105) == Wake(106, 106.0)
    assert next_wake(100.2, 1.0, after=99) == Wake(101, 101.0)


def test_on_time_holds_until_the_period_ends() -> None:
    wake = Wake(10, 5.0)
    assert on_time(wake, 5.0, 0.5)
    assert on_time(wake, 5.4999, 0.5)
    assert not on_time(wake, 5.5, 0.5)


async def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        await announcement_worker(FakeRooms(), interval_s=0, text=TEXT)


# -- claims ----------------------------------------------------------------------


async def test_every_claimed_period_announces_to_every_room() -> None:
    clock = FakeTime(START, sleeps=2)
    rooms = FakeRooms()
    metrics = FakeMetrics()
    await run(clock, rooms, lease=FakeLease(True), metrics=metrics)

    assert [(q, room) for q, room, _ in rooms.sent] == [
        (q, room) for q in (1, 2) for room in ("team-a", "team-b", "lobby")
    ]
    message = rooms.sent[0][2]
    assert isinstance(message, ServerSystemAnnouncement) and message.payload.text == TEXT
    assert metrics.claims == 2
    assert metrics.sent == 6


async def test_a_period_claimed_elsewhere_is_not_announced() -> None:
    clock = FakeTime(START, sleeps=3)
    rooms = FakeRooms()
    metrics = FakeMetrics()
    lease = FakeLease(False, True, False)
    await run(clock, rooms, lease=lease, metrics=metrics)

    assert len(lease.claims) == 3
    assert rooms.queries == [""]  # only the claimed (second) period asked for rooms
    assert len(rooms.sent) == 3
    assert metrics.skips["claimed_elsewhere"] == 2
    assert metrics.claims == 1


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(LeaseUnavailable("cannot claim p-1.0-7: TimeoutError"), id="unavailable"),
        pytest.param(RuntimeError("a bug in the lease"), id="unexpected"),
    ],
)
async def test_a_lease_error_skips_the_period_and_is_logged(error: Exception) -> None:
    clock = FakeTime(START, sleeps=2)
    rooms = FakeRooms()
    metrics = FakeMetrics()
    lease = FakeLease(error, True)
    with structlog.testing.capture_logs() as logs:
        await run(clock, rooms, lease=lease, metrics=metrics)

    first = math.floor(START) + 1
    assert lease.claims == [first, first + 1]  # the worker went on after the error
    assert rooms.queries == [""]  # the failed period announced nothing
    assert metrics.skips["lease_unavailable"] == 1
    [event] = [e for e in logs if e["event"] == "announcer.lease_unavailable"]
    assert event["period"] == first


async def test_no_lease_means_every_period_is_announced() -> None:
    clock = FakeTime(START, sleeps=3)
    rooms = FakeRooms()
    await run(clock, rooms)
    assert rooms.queries == ["", "", ""]


async def test_always_lease_grants_everything() -> None:
    assert await AlwaysLease().claim(0) and await AlwaysLease().claim(0)


# -- stalls ----------------------------------------------------------------------


async def test_a_long_stall_skips_the_missed_periods_without_a_burst() -> None:
    # The second sleep overruns by 5.3 periods (a blocked loop, a suspended VM).
    clock = FakeTime(START, sleeps=4, stalls={1: 5.3})
    lease = FakeLease(True)
    with structlog.testing.capture_logs() as logs:
        await run(clock, FakeRooms(), interval_s=0.5, lease=lease)

    first = math.floor(START / 0.5) + 1
    # Period first+1 was woken for 5.3 s late: skipped, as were the 10 periods the
    # stall spanned; the next claim is at the first boundary after waking.
    resumed = math.floor((first + 1) * 0.5 / 0.5 + 5.3 / 0.5) + 1
    assert lease.claims == [first, resumed, resumed + 1]
    assert clock.woke_at[2:] == [resumed * 0.5, (resumed + 1) * 0.5]
    missed = [e for e in logs if e["event"] == "announcer.periods_missed"]
    assert [e["period"] for e in missed] == [first + 1]


async def test_a_short_delay_within_the_period_still_announces() -> None:
    clock = FakeTime(START, sleeps=2, stalls={0: 0.3})  # woke 0.3 s into a 1 s period
    lease = FakeLease(True)
    await run(clock, FakeRooms(), lease=lease)
    first = math.floor(START) + 1
    assert lease.claims == [first, first + 1]


# -- the directory ----------------------------------------------------------------


async def test_the_room_prefix_is_passed_to_the_directory() -> None:
    clock = FakeTime(START, sleeps=1)
    rooms = FakeRooms()
    await run(clock, rooms, room_prefix="team-", lease=FakeLease(True))
    assert rooms.queries == ["team-"]
    assert sorted(room for _, room, _ in rooms.sent) == ["team-a", "team-b"]


async def test_a_failing_directory_costs_one_period_and_not_the_worker() -> None:
    clock = FakeTime(START, sleeps=3)
    rooms = FakeRooms(failures=[BackendError("the room directory did not answer"), None])
    metrics = FakeMetrics()
    with structlog.testing.capture_logs() as logs:
        await run(clock, rooms, lease=FakeLease(True), metrics=metrics)

    assert len(rooms.queries) == 3
    assert {q for q, _, _ in rooms.sent} == {2, 3}  # the periods after the failure
    assert metrics.skips["directory_unavailable"] == 1
    assert metrics.claims == 3
    assert [e["event"] for e in logs].count("announcer.directory_unavailable") == 1


async def test_an_unexpected_directory_error_is_logged_and_the_worker_goes_on() -> None:
    clock = FakeTime(START, sleeps=2)
    rooms = FakeRooms(failures=[KeyError("bug")])
    with structlog.testing.capture_logs() as logs:
        await run(clock, rooms)
    assert {q for q, _, _ in rooms.sent} == {2}
    assert any(e["event"] == "announcer.failed" for e in logs)


async def test_one_failing_room_does_not_cost_the_others() -> None:
    clock = FakeTime(START, sleeps=1)
    rooms = FakeRooms(broken_rooms=["team-a"])
    metrics = FakeMetrics()
    with structlog.testing.capture_logs() as logs:
        await run(clock, rooms, metrics=metrics)
    assert [room for _, room, _ in rooms.sent] == ["team-b", "lobby"]
    assert metrics.sent == 2
    assert any(e["event"] == "announcer.broadcast_failed" and e["rooms"] == 1 for e in logs)
