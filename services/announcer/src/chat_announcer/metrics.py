"""The announcer's Prometheus metrics (never labelled by user or room)."""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Counter

from chat_announcements.worker import SkipReason

__all__ = ["Metrics"]


class Metrics:
    """Metrics of one announcer replica, registered on ``registry``.

    Implements :class:`chat_announcements.worker.AnnouncerMetrics`. Summed over
    replicas, ``periods_claimed`` grows by one per period.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.announcements_sent = Counter(
            "chat_announcer_announcements_sent_total",
            "Rooms sent the system announcement (one per room per claimed period)",
            registry=registry,
        )
        self.periods_claimed = Counter(
            "chat_announcer_periods_claimed_total",
            "Periods this replica claimed, and so announced in",
            registry=registry,
        )
        self.periods_skipped = Counter(
            "chat_announcer_periods_skipped_total",
            "Periods this replica did not announce in, by reason",
            ["reason"],
            registry=registry,
        )
        # Every reason shows from the start (at 0), so rate() and alerts see it.
        for reason in get_args(SkipReason):
            self.periods_skipped.labels(reason=reason)

    def claimed(self) -> None:
        self.periods_claimed.inc()

    def skipped(self, reason: SkipReason) -> None:
        self.periods_skipped.labels(reason=reason).inc()

    def announced(self, rooms: int) -> None:
        self.announcements_sent.inc(rooms)
