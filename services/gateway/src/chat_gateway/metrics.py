"""The gateway's Prometheus metrics (never labelled by user or room).

Connection and traffic totals are read from the connection manager at scrape time,
so the hot path only bumps plain integers.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chat_protocol.close_codes import CloseCode
from falcon_pachinko import WebSocketConnectionManager

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


class Metrics:
    """Metrics of one gateway, registered on ``registry``.

    The connection totals are read from ``manager``, given here or later to
    :meth:`watch` (the middleware that counts rejections exists before it).
    """

    def __init__(
        self, registry: CollectorRegistry, manager: WebSocketConnectionManager | None = None
    ) -> None:
        self._registry = registry
        if manager is not None:
            self.watch(manager)
        self.handshakes_rejected = Counter(
            "chat_gateway_handshakes_rejected_total",
            "WebSocket handshakes refused (HTTP 403, or 503 for unavailable), by reason",
            ["reason"],
            registry=registry,
        )
        self.server_errors = Counter(
            "chat_gateway_server_errors_total",
            "serverError messages sent to clients, by code",
            ["code"],
            registry=registry,
        )

    def watch(self, manager: WebSocketConnectionManager) -> None:
        """Report ``manager``'s connections and traffic (once per registry)."""
        self._registry.register(_ManagerCollector(manager))

    def count_rejection(self, reason: str) -> None:
        """Count one refused handshake."""
        self.handshakes_rejected.labels(reason).inc()
