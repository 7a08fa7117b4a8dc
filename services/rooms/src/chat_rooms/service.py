"""The rooms service: the membership directory, plus the chat's presence announcements."""

from __future__ import annotations

from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry

from chat_protocol.messages import encode, typing_stopped
from chat_protocol.presence import presence_announcer
from chat_protocol.subjects import PREFIX as SUBJECT_PREFIX
from chat_runtime.lifecycle import wait_for_shutdown
from chat_runtime.natsconn import connect_nats
from chat_runtime.ops import serve_ops
from falcon_pachinko import BackendError
from falcon_pachinko.backends.nats import NatsBroker, new_node_id
from falcon_pachinko.directory import Directory
from falcon_pachinko.membership import Lost
from falcon_pachinko.presence import PresenceChange
from falcon_pachinko.subjects import Subjects

from .metrics import Metrics
from .presence import typists_to_stop
from .settings import Settings

__all__ = ["run"]

log = structlog.get_logger(__name__)


class RoomPublisher(Protocol):
    """The part of a broker this service uses."""

    async def publish(self, room: str, data: bytes, *, exclude: str | None = None) -> None: ...


class PresenceRules:
    """The chat's reactions to the directory's reports, published into the rooms.

    Args:
        publisher: Publishes room traffic (a broker that is never started: this
            service holds no sockets).
        metrics: Counts what was announced.
    """

    def __init__(self, publisher: RoomPublisher, metrics: Metrics) -> None:
        self._publisher = publisher
        self._metrics = metrics
        self._announce = presence_announcer(self._publish)

    async def on_presence(self, change: PresenceChange) -> None:
        """Announce a user's first arrival or last departure in a room."""
        await self._announce(change)
        if change.present:
            self._metrics.arrivals_announced.inc()
        else:
            self._metrics.departures_announced.inc()

    async def on_lost(self, lost: list[Lost]) -> None:
        """Connections vanished with their gateway: none of them is typing any more."""
        self._metrics.members_lost.inc(len(lost))
        for room, user in typists_to_stop(lost):
            await self._publish(room, typing_stopped(user))

    async def _publish(self, room: str, message: object, *, exclude: str | None = None) -> None:
        try:
            await self._publisher.publish(room, encode(message), exclude=exclude)  # type: ignore[arg-type]
        except BackendError:
            log.warning("rooms.announcement_not_sent")


async def run(settings: Settings) -> int:
    """Serve until a signal (exit 0) or until NATS is lost for good (exit 1)."""
    registry = CollectorRegistry()
    conn = await connect_nats(settings, "rooms", registry)
    directory = Directory(
        conn.client,
        Subjects(SUBJECT_PREFIX),
        ttl_s=settings.presence_ttl_s,
        grace_s=settings.presence_grace_s,
        expiry_interval_s=settings.presence_check_interval_s,
        name="chat-rooms",
    )
    metrics = Metrics(registry, directory.registry)
    broker = NatsBroker(conn.client, Subjects(SUBJECT_PREFIX), new_node_id())
    rules = PresenceRules(broker, metrics)
    directory.on_lost = rules.on_lost
    directory.on_presence = rules.on_presence
    await directory.start()
    conn.on_reconnected.append(directory.request_resync)
    try:
        async with serve_ops(
            settings.metrics_host, settings.metrics_port, lambda: conn.connected, registry
        ) as port:
            log.info("service.ready", service="rooms", port=port, ttl_s=settings.presence_ttl_s)
            code = await wait_for_shutdown(conn)
    finally:
        await directory.stop()
        await conn.drain(settings.nats_drain_timeout_s)
    return code
