"""The rooms service: the membership directory, plus the chat's departure announcements."""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry

from chat_protocol.messages import ServerUserLeft, UserPayload
from chat_runtime.lifecycle import wait_for_shutdown
from chat_runtime.natsconn import connect_nats
from chat_runtime.ops import serve_ops
from falcon_pachinko import WebSocketConnectionManager
from falcon_pachinko.backends.nats import NatsBackend
from falcon_pachinko.directory import Directory
from falcon_pachinko.membership import Lost
from falcon_pachinko.subjects import Subjects

from .metrics import Metrics
from .presence import departures
from .settings import Settings

__all__ = ["SUBJECT_PREFIX", "run"]

log = structlog.get_logger(__name__)

SUBJECT_PREFIX = "chat"


async def run(settings: Settings) -> int:
    """Serve until a signal (exit 0) or until NATS is lost for good (exit 1)."""
    registry = CollectorRegistry()
    conn = await connect_nats(settings, "rooms", registry)
    # Publishing into rooms goes through the library, like every other producer.
    rooms = WebSocketConnectionManager(
        NatsBackend(client=conn.client, subject_prefix=SUBJECT_PREFIX, presence=False)
    )
    await rooms.start()

    async def announce(lost: list[Lost]) -> None:
        metrics.members_lost.inc(len(lost))
        for room, user in departures(lost, directory.registry):
            await rooms.broadcast_to_room(room, ServerUserLeft(payload=UserPayload(user=user)))
            metrics.departures_announced.inc()

    directory = Directory(
        conn.client,
        Subjects(SUBJECT_PREFIX),
        ttl_s=settings.presence_ttl_s,
        expiry_interval_s=settings.presence_check_interval_s,
        on_lost=announce,
        name="chat-rooms",
    )
    metrics = Metrics(registry, directory.registry)
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
        await rooms.stop()
        await conn.drain(settings.nats_drain_timeout_s)
    return code
