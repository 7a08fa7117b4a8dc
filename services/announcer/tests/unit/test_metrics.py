"""The announcer's Prometheus metrics: what the worker reports, as counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chat_announcements.worker import AnnouncerMetrics
from chat_announcer.metrics import Metrics


def skipped(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("chat_announcer_periods_skipped_total", {"reason": reason})


def test_every_skip_reason_is_exported_from_the_start() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    for reason in ("claimed_elsewhere", "lease_unavailable", "directory_unavailable"):
        assert skipped(registry, reason) == 0


def test_what_the_worker_reports_is_counted() -> None:
    registry = CollectorRegistry()
    metrics: AnnouncerMetrics = Metrics(registry)
    metrics.claimed()
    metrics.claimed()
    metrics.skipped("lease_unavailable")
    metrics.announced(3)
    metrics.announced(2)
    assert registry.get_sample_value("chat_announcer_periods_claimed_total") == 2
    assert skipped(registry, "lease_unavailable") == 1
    assert skipped(registry, "claimed_elsewhere") == 0
    assert registry.get_sample_value("chat_announcer_announcements_sent_total") == 5
