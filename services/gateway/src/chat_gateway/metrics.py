"""The gateway's Prometheus metrics (never labelled by user or room).

Connection and traffic totals are read from the connection manager at scrape time,
so the hot path only bumps plain integers. That includes what the library refuses
on its own, before any chat resource exists (a full gateway, an ``on_connect``
that timed out): those refusals appear in ``chat_gateway_handshakes_rejected_total``
next to the chat's own reasons.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from chat_protocol.close_codes import CloseCode
from falcon_pachinko import WebSocketConnectionManager
from falcon_pachinko.backends.nats import NatsProbe

__all__ = ["Metrics"]


class _ManagerCollector(Collector):
    def __init__(self, manager: WebSocketConnectionManager) -> None:
        self._manager = manager

    def collect(self) -> Iterator[Metric]:
        stats = self._manager.stats
        yield GaugeMetricFamily(
            "chat_gateway_connections",
            "Open WebSocket connections on this gateway",
            value=self._manager.connection_count,
        )
        yield GaugeMetricFamily(
            "chat_gateway_rooms",
            "Rooms with members on this gateway (one NATS subscription each)",
            value=len(self._manager.local_rooms()),
        )
        yield CounterMetricFamily(
            "chat_gateway_connections_opened",
            "WebSocket handshakes that reached the chat resource",
            value=stats.connections_opened,
        )
        yield CounterMetricFamily(
            "chat_gateway_frames_received",
            "Frames received from clients",
            value=stats.frames_received,
        )
        yield CounterMetricFamily(
            "chat_gateway_frames_delivered",
            "Room messages queued for local clients",
            value=stats.frames_delivered,
        )
        yield CounterMetricFamily(
            "chat_gateway_slow_consumer_disconnects",
            f"Clients closed with {CloseCode.SLOW_CONSUMER:d} because their outbound queue"
            " overflowed",
            value=stats.slow_consumers,
        )
        yield CounterMetricFamily(
            "chat_gateway_messages_rate_limited",
            "Client messages refused (serverError rate_limited) for exceeding the"
            " connection's budget; never sent to the room",
            value=stats.frames_rate_limited,
        )
        yield CounterMetricFamily(
            "chat_gateway_flood_disconnects",
            f"Clients closed with {CloseCode.POLICY_VIOLATION:d} for sending far past their budget",
            value=stats.rate_limit_closes,
        )
        yield CounterMetricFamily(
            "chat_gateway_messages_stored",
            "Chat messages stored in the room history (acknowledged by the store) by this gateway",
            value=stats.messages_stored,
        )
        yield CounterMetricFamily(
            "chat_gateway_duplicate_sends",
            "Resends with a clientMsgId already stored within the dedup window (not stored again)",
            value=stats.duplicates,
        )
        yield CounterMetricFamily(
            "chat_gateway_drained_connections",
            f"Clients closed with {CloseCode.SERVICE_RESTART:d} by a drain at shutdown, spread"
            " over CHAT_DRAIN_S",
            value=stats.drained,
        )
        latency = stats.delivery_latency
        yield HistogramMetricFamily(
            "chat_gateway_delivery_latency_seconds",
            "From a stored message's append on any gateway (its ts) to its arrival here,"
            " once per message per gateway",
            buckets=latency.cumulative(),
            sum_value=latency.sum,
        )
        yield CounterMetricFamily(
            "chat_gateway_resync_disconnects",
            f"Clients closed with {CloseCode.RESYNC:d} to resume: live messages were lost on"
            " the way, a catch-up overflowed, or the history could not be read",
            value=stats.resyncs,
        )


class _ProbeCollector(Collector):
    def __init__(self, probe: NatsProbe) -> None:
        self._probe = probe

    def collect(self) -> Iterator[Metric]:
        schedule = self._probe.schedule
        yield GaugeMetricFamily(
            "chat_gateway_nats_hearing",
            "1 while this gateway's self-probes come back through NATS, 0 once two in a"
            " row were lost (readiness fails then)",
            value=1 if self._probe.hearing() else 0,
        )
        yield CounterMetricFamily(
            "chat_gateway_nats_probes_lost",
            "Self-probes that did not come back within CHAT_PROBE_TIMEOUT_S",
            value=schedule.lost,
        )


class _Rejections(Collector):
    """``chat_gateway_handshakes_rejected_total{reason}``: the chat's and the library's."""

    def __init__(self) -> None:
        self.manager: WebSocketConnectionManager | None = None
        self.counts: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "chat_gateway_handshakes_rejected",
            "WebSocket handshakes refused (HTTP 403, or 503 for unavailable, gateway_full"
            " and connect_timeout), by reason",
            labels=["reason"],
        )
        library: dict[str, int] = {}
        if self.manager is not None:
            stats = self.manager.stats
            library = {
                "gateway_full": stats.refused_full,
                "connect_timeout": stats.connect_timeouts,
                "draining": stats.refused_draining,
            }
        for reason, count in sorted({**self.counts, **library}.items()):
            family.add_metric([reason], count)
        yield family


class Metrics:
    """Metrics of one gateway, registered on ``registry``.

    The connection totals are read from ``manager``, given here or later to
    :meth:`watch` (the middleware that counts rejections exists before it).
    """

    def __init__(
        self, registry: CollectorRegistry, manager: WebSocketConnectionManager | None = None
    ) -> None:
        self._registry = registry
        self._rejections = _Rejections()
        registry.register(self._rejections)
        if manager is not None:
            self.watch(manager)
        self.probe_rtt = Histogram(
            "chat_gateway_nats_probe_rtt_seconds",
            "Round trip of this gateway's self-probe through NATS",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
            registry=registry,
        )
        self.server_errors = Counter(
            "chat_gateway_server_errors_total",
            "serverError messages sent to clients, by code",
            ["code"],
            registry=registry,
        )

    def watch(self, manager: WebSocketConnectionManager) -> None:
        """Report ``manager``'s connections, traffic and refusals (once per registry)."""
        self._registry.register(_ManagerCollector(manager))
        self._rejections.manager = manager

    def watch_probe(self, probe: NatsProbe) -> None:
        """Report ``probe``'s verdict and losses (its round trips go to :attr:`probe_rtt`)."""
        self._registry.register(_ProbeCollector(probe))

    def reject(self, reason: str) -> None:
        """Count one handshake the chat refused (origin, auth, room, ...), for ``reason``."""
        counts = self._rejections.counts
        counts[reason] = counts.get(reason, 0) + 1
