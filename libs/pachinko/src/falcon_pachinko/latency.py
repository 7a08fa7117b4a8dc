"""A latency histogram of plain counters, for metrics read at scrape time (pure).

The hot path only adds to integers (no locks, no metric library); a collector
turns the counts into a Prometheus histogram when scraped.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Final

__all__ = ["DELIVERY_BUCKETS_S", "LatencyHistogram"]

#: Upper bounds, in seconds, from a loopback hop to a struggling cluster.
DELIVERY_BUCKETS_S: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class LatencyHistogram:
    """Counts of observations per bucket (not cumulative), their sum and number.

    Args:
        buckets_s: Ascending upper bounds; a last, unbounded bucket is implied.
    """

    __slots__ = ("bounds", "counts", "count", "sum")

    def __init__(self, buckets_s: Sequence[float] = DELIVERY_BUCKETS_S) -> None:
        if list(buckets_s) != sorted(set(buckets_s)) or not buckets_s:
            raise ValueError("buckets must be distinct and ascending")
        self.bounds: Final = tuple(buckets_s)
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Add one observation (a negative one, from clocks apart, counts as 0)."""
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """``(upper bound, observations at or below it)`` per bucket, ``+Inf`` last."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out
