"""When each connection of a process that is going away is closed (pure).

A process that closes all its connections at once (1012, service restart) sends
every client back at the same moment: they reconnect together, to whatever is
left, in one burst of handshakes, history reads and presence changes. Spread over
a window instead, the burst becomes a trickle.

The schedule is *stratified jitter*: the window is cut into as many equal slots
as there are connections, and each connection closes at a random moment of its
own slot. The closes are as even as a fixed schedule (never two slots' worth at
once) and as unpredictable as random ones, so processes that drain together do
not line up.
"""

from __future__ import annotations

import random

__all__ = ["spread"]


def spread(count: int, window_s: float, rng: random.Random) -> list[float]:
    """Offsets in seconds, ascending, one per connection, all within ``[0, window_s)``.

    Raises:
        ValueError: ``count`` or ``window_s`` is negative.
    """
    if count < 0 or window_s < 0:
        raise ValueError("count and window_s must not be negative")
    if count == 0:
        return []
    slot = window_s / count
    return [(i + rng.random()) * slot for i in range(count)]
