"""The rooms service's composition root: the membership directory, wired to the chat's rules."""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry

from chat_protocol.subjects import PREFIX as SUBJECT_PREFIX
from chat_runtime.lifecycle import wait_for_shutdown
from chat_runtime.natsconn import connect_nats
from chat_runtime.ops import serve_ops
from falcon_pachinko.backends.nats import NatsBroker, new_node_id
from falcon_pachinko.directory import Directory
from falcon_pachinko.subjects import Subjects

from .metrics import Metrics
from .presence import PresenceRules
from .settings import Settings

__all__ = ["run"]

log = structlog.get_logger(__name__)


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
