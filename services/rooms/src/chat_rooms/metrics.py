"""The rooms service's Prometheus metrics (never labelled by user or room)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from falcon_pachinko.directory import Directory

__all__ = ["Metrics"]


class Metrics:
    """Metrics of one rooms service, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry, directory: Directory) -> None:
        membership = directory.registry
        Gauge(
            "chat_rooms_active",
            "1 while this replica is the active one (it announces presence), else 0",
            registry=registry,
        ).set_function(lambda: 1 if directory.active else 0)
        Gauge(
            "chat_rooms_handover_owed",
            "Presence changes this standby decided that no announcement has covered yet",
            registry=registry,
        ).set_function(lambda: directory.handover.owed)
        registry.register(_TakeoverCollector(directory))
        Gauge(
            "chat_rooms_gateways",
            "Gateways currently heartbeating",
            registry=registry,
        ).set_function(lambda: membership.node_count)
        Gauge(
            "chat_rooms_rooms",
            "Rooms with at least one member, cluster-wide",
            registry=registry,
        ).set_function(lambda: membership.room_count)
        Gauge(
            "chat_rooms_connections",
            "Room memberships (connection x room), cluster-wide",
            registry=registry,
        ).set_function(lambda: membership.connection_count)
        self.members_lost = Counter(
            "chat_rooms_members_lost_total",
            "Memberships dropped because their gateway stopped heartbeating or left",
            registry=registry,
        )
        self.departures_announced = Counter(
            "chat_rooms_departures_announced_total",
            "serverUserLeft published: a user's last connection in a room is gone",
            registry=registry,
        )
        self.arrivals_announced = Counter(
            "chat_rooms_arrivals_announced_total",
            "serverUserJoined published: a user's first connection in a room arrived",
            registry=registry,
        )
        Gauge(
            "chat_rooms_presence_held",
            "Connections of gracefully stopped gateways whose users are held present",
            registry=registry,
        ).set_function(lambda: membership.presence.held_count)


class _TakeoverCollector(Collector):
    """Counters kept by the directory itself, read at scrape time."""

    def __init__(self, directory: Directory) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        election = self._directory.election
        yield CounterMetricFamily(
            "chat_rooms_takeovers",
            "Times this replica became the active one (claimed a vacant or stale lease)",
            value=0 if election is None else election.leadership.takeovers,
        )
        yield CounterMetricFamily(
            "chat_rooms_handed_over",
            "Presence changes announced on taking over, that the replica before did not",
            value=self._directory.handed_over,
        )
