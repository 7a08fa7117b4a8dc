"""The rooms service's Prometheus metrics (never labelled by user or room)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from falcon_pachinko.registry import Registry

__all__ = ["Metrics"]


class Metrics:
    """Metrics of one rooms service, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry, membership: Registry) -> None:
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
