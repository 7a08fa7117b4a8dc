"""The client's token bucket: below the gateway's budget, never a refusal."""

from __future__ import annotations

import pytest

from chat_client.pacing import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_goes_at_once_then_the_rate_holds() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=8, burst=16, clock=clock)
    assert [bucket.take() for _ in range(16)] == [0.0] * 16
    waits = [bucket.take() for _ in range(4)]
    assert waits == pytest.approx([1 / 8, 2 / 8, 3 / 8, 4 / 8])


def test_quiet_time_refills_up_to_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=10, burst=3, clock=clock)
    for _ in range(3):
        bucket.take()
    clock.now += 60  # far more than it takes to refill
    assert [bucket.take() for _ in range(3)] == [0.0] * 3
    assert bucket.take() == pytest.approx(0.1)


def test_sending_at_the_rate_never_waits() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=8, burst=1, clock=clock)
    for _ in range(100):
        assert bucket.take() == 0.0
        clock.now += 1 / 8


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bounds_are_checked(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)
