"""The delivery-latency histogram's counting."""

from __future__ import annotations

import pytest

from falcon_pachinko.latency import LatencyHistogram


def test_observations_fall_in_their_buckets_cumulatively() -> None:
    h = LatencyHistogram((0.01, 0.1, 1.0))
    for seconds in (0.005, 0.01, 0.05, 2.0, -3.0):
        h.observe(seconds)
    assert h.cumulative() == [("0.01", 3), ("0.1", 4), ("1.0", 4), ("+Inf", 5)]
    assert h.count == 5 and h.sum == pytest.approx(2.065)


@pytest.mark.parametrize("buckets", [(), (1.0, 0.5), (0.5, 0.5)])
def test_buckets_are_ascending_and_distinct(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        LatencyHistogram(buckets)
