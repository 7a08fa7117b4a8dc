"""A token bucket: how many events a budget allows, decided without a clock.

Pure and tiny. The time is passed in (``now``, seconds on any monotonic scale),
so a bucket is tested by feeding it timestamps, never by sleeping.

A bucket holds at most ``burst`` tokens and gains ``rate_per_s`` tokens per
second. It starts full. :meth:`TokenBucket.take` spends one token when there is
one and says whether it did. Over any interval of length ``T``, therefore, at
most ``burst + rate_per_s * T`` takes succeed: the tokens held at the start of
the interval (at most ``burst``) plus those gained during it.

Failure rules: a bucket never raises on its inputs once built. A ``now`` earlier
than one already seen (a clock that stepped back) adds no tokens and does not
move the bucket's notion of time back. ``rate_per_s=0`` disables the bucket:
every take succeeds. Bad parameters raise ``ValueError`` at construction.
"""

from __future__ import annotations

import math

import msgspec

__all__ = ["RateLimit", "TokenBucket"]


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    """A message budget: a sustained rate and a burst.

    Attributes:
        rate_per_s: Tokens gained per second; ``0`` disables the limit.
        burst: Most tokens held at once: how many events may come back to back.
    """

    rate_per_s: float = 0.0
    burst: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s >= 0):
            raise ValueError("rate_per_s must be finite and non-negative")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")

    @property
    def enabled(self) -> bool:
        """``False`` when the rate is 0 (no limit)."""
        return self.rate_per_s > 0

    def bucket(self) -> TokenBucket:
        """A new, full bucket with this budget."""
        return TokenBucket(self.rate_per_s, self.burst)


class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; one per event.

    Args:
        rate_per_s: Tokens gained per second; ``0`` disables the bucket (every
            :meth:`take` succeeds).
        burst: Capacity, and the tokens held at the start.

    Raises:
        ValueError: ``rate_per_s`` is negative or not finite, or ``burst`` < 1.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int) -> None:
        RateLimit(rate_per_s=rate_per_s, burst=burst)  # the same checks, in one place
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        self._tokens = float(burst)
        #: The latest ``now`` seen; ``None`` until the first take.
        self._last: float | None = None

    def take(self, now: float) -> bool:
        """Spend one token if there is one.

        Args:
            now: The current time, in seconds (monotonic).

        Returns:
            ``True`` if the event is within budget (a token was spent).
        """
        if self.rate_per_s == 0:
            return True
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def tokens(self, now: float) -> float:
        """The tokens available at ``now`` (refilling first); for tests and metrics."""
        if self.rate_per_s == 0:
            return float(self.burst)
        self._refill(now)
        return self._tokens

    def _refill(self, now: float) -> None:
        last = self._last
        if last is None or now > last:
            if last is not None:
                self._tokens = min(float(self.burst), self._tokens + (now - last) * self.rate_per_s)
            self._last = now

    def __repr__(self) -> str:
        return f"<TokenBucket {self.rate_per_s}/s burst={self.burst} tokens={self._tokens:.2f}>"
