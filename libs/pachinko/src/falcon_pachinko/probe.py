"""Is this process still hearing its broker? A self-probe's schedule and verdict (pure).

A process can be connected and still not receive: a route that broke, a client
stuck behind a half-open socket, a reader that stopped draining. The only proof
that traffic reaches a process is traffic that does: every ``interval_s`` it
publishes a probe to a subject only it subscribes to, on the connection
everything else uses, and times its return. What it proves is that path (the
socket, the server, the routes, the client's reader); it says nothing of one
other subscription the server may have dropped (a durable room's missed message
shows as a gap, and its members resynchronise). :class:`ProbeSchedule` decides; the NATS adapter
(:class:`falcon_pachinko.backends.nats.NatsProbe`) sends, receives and sleeps.

Rules:

* one probe in flight at a time; one not back within ``timeout_s`` is *lost*,
  and the next goes out ``interval_s`` after it was sent;
* a process is *hearing* while its last probe to come back did so within
  ``stale_after_s`` (by default two intervals plus the timeout: two probes in a
  row lost), and, before any came back, for ``stale_after_s`` after starting;
* a probe that comes back after it was counted lost, or one never sent, changes
  nothing;
* time is the caller's (a monotonic clock), so every rule is tested without
  waiting.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ProbeSchedule"]

#: The verdict is kept for this many intervals (plus the timeout) after a success.
_STALE_INTERVALS: Final = 2


class ProbeSchedule:
    """When to send the next probe, and whether the process is hearing its broker.

    Args:
        interval_s: Between one probe's sending and the next's.
        timeout_s: A probe not back within this is lost (below ``interval_s``).
        now: The clock's reading at start.
        stale_after_s: How long after the last probe that came back the process
            still counts as hearing; by default ``2 * interval_s + timeout_s``.

    Raises:
        ValueError: The durations are not positive, or ``timeout_s`` is not below
            ``interval_s``.
    """

    def __init__(
        self,
        interval_s: float,
        timeout_s: float,
        now: float,
        *,
        stale_after_s: float | None = None,
    ) -> None:
        if not 0 < timeout_s < interval_s:
            raise ValueError("need 0 < timeout_s < interval_s")
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.stale_after_s = (
            stale_after_s
            if stale_after_s is not None
            else _STALE_INTERVALS * interval_s + timeout_s
        )
        if self.stale_after_s <= 0:
            raise ValueError("stale_after_s must be positive")
        self.sent = 0
        self.returned = 0
        self.lost = 0
        self._started = now
        self._last_return: float | None = None
        self._in_flight: tuple[int, float] | None = None  # (token, sent at)
        self._next_send = now

    def due_in(self, now: float) -> float:
        """Seconds until something is due: a probe to send, or one to count lost."""
        if self._in_flight is not None:
            return max(0.0, self._in_flight[1] + self.timeout_s - now)
        return max(0.0, self._next_send - now)

    def send(self, now: float) -> int | None:
        """The token of a probe to send now, or ``None`` if none is due."""
        self.expire(now)
        if self._in_flight is not None or now < self._next_send:
            return None
        self.sent += 1
        token = self.sent
        self._in_flight = (token, now)
        self._next_send = now + self.interval_s
        return token

    def returned_probe(self, token: int, now: float) -> float | None:
        """A probe came back: its round trip, or ``None`` if it no longer counts."""
        if self._in_flight is None or self._in_flight[0] != token:
            return None
        rtt = now - self._in_flight[1]
        if rtt > self.timeout_s:
            self.expire(now)
            return None
        self._in_flight = None
        self.returned += 1
        self._last_return = now
        return rtt

    def expire(self, now: float) -> bool:
        """Count the probe in flight lost if its time is up; whether it was."""
        if self._in_flight is not None and now - self._in_flight[1] > self.timeout_s:
            self._in_flight = None
            self.lost += 1
            return True
        return False

    def hearing(self, now: float) -> bool:
        """Whether a probe came back recently enough (see the module's rules)."""
        since = self._last_return if self._last_return is not None else self._started
        return now - since <= self.stale_after_s
