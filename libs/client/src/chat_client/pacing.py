"""How fast a client sends: a token bucket below the gateway's message budget (pure).

The gateway refuses a client's messages beyond ``CHAT_RATE_PER_S`` sustained and
``CHAT_RATE_BURST`` back to back (``serverError`` ``rate_limited``), and closes a
client that keeps going (1008, final). A client that paces itself below that —
8 per second and bursts of 16 by default, under the gateway's defaults of 10
and 20 — never loses a message to the budget, including the burst of resends
after a reconnect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

__all__ = ["DEFAULT_BURST", "DEFAULT_RATE_PER_S", "TokenBucket"]

DEFAULT_RATE_PER_S: Final = 8.0
DEFAULT_BURST: Final = 16


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up.

    Args:
        rate_per_s: Sustained sends per second.
        burst: Sends that may go back to back after a quiet while.
        clock: Monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        rate_per_s: float = DEFAULT_RATE_PER_S,
        burst: int = DEFAULT_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate_per_s > 0 or burst < 1:
            raise ValueError("need rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> float:
        """Take a token: how long to wait before sending (0: at once)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_s
