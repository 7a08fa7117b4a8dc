"""The token bucket: timestamps in, yes or no out. No clock, no sleeps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falcon_pachinko.ratelimit import RateLimit, TokenBucket

#: Float sums of elapsed times may land a hair above an exact bound.
EPSILON = 1e-9


@pytest.mark.parametrize(
    ("takes", "allowed"),
    [
        pytest.param(5, True, id="burst-passes"),
        pytest.param(6, False, id="burst-plus-one-refused"),
    ],
)
def test_a_full_bucket_allows_exactly_its_burst_at_once(takes: int, allowed: bool) -> None:
    bucket = TokenBucket(rate_per_s=1, burst=5)
    results = [bucket.take(100.0) for _ in range(takes)]
    assert results[:-1] == [True] * (takes - 1)
    assert results[-1] is allowed


@pytest.mark.parametrize(
    ("elapsed", "allowed"),
    [
        pytest.param(0.5, True, id="one-token-refilled-passes"),
        pytest.param(0.499, False, id="just-short-of-a-token-refused"),
    ],
)
def test_tokens_come_back_at_the_rate(elapsed: float, allowed: bool) -> None:
    bucket = TokenBucket(rate_per_s=2, burst=3)
    assert all(bucket.take(0.0) for _ in range(3))
    assert bucket.take(elapsed) is allowed


def test_refill_stops_at_the_burst() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=4)
    bucket.take(0.0)
    assert bucket.tokens(3600.0) == 4
    assert [bucket.take(3600.0) for _ in range(5)] == [True] * 4 + [False]


def test_rate_zero_disables_the_bucket() -> None:
    bucket = TokenBucket(rate_per_s=0, burst=1)
    assert all(bucket.take(0.0) for _ in range(10_000))
    assert not RateLimit(rate_per_s=0).enabled


def test_a_clock_that_steps_back_adds_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=1)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)  # earlier: no refill, and time is not moved back
    assert not bucket.take(10.5)
    assert bucket.take(11.0)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        pytest.param(-1.0, 1, id="negative-rate"),
        pytest.param(float("inf"), 1, id="infinite-rate"),
        pytest.param(float("nan"), 1, id="nan-rate"),
        pytest.param(1.0, 0, id="zero-burst"),
    ],
)
def test_bad_parameters_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)
    with pytest.raises(ValueError):
        RateLimit(rate_per_s=rate, burst=burst)


@settings(max_examples=150, deadline=None)
@given(
    rate=st.floats(min_value=0.1, max_value=1000),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
def test_no_window_dispatches_more_than_burst_plus_rate_times_its_length(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst)
    now = 0.0
    taken: list[float] = []
    for gap in gaps:
        now += gap
        if bucket.take(now):
            taken.append(now)
    # Windows [taken[i], taken[j]] are the tightest ones: any window holding
    # those takes is at least that long.
    for i in range(len(taken)):
        for j in range(i, len(taken)):
            window = taken[j] - taken[i]
            assert j - i + 1 <= burst + rate * window + EPSILON
