"""The rooms service's composition root: the membership directory, wired to the chat's rules."""

from __future__ import annotations

import asyncio

import structlog
from prometheus_client import CollectorRegistry

from chat_protocol.subjects import PREFIX as SUBJECT_PREFIX
from chat_runtime.lifecycle import connect_unless_stopped, shutdown_signals, wait_for_shutdown
from chat_runtime.natsconn import NatsConnection
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
    """Serve until a signal (exit 0) or until NATS is lost for good (exit 1).

    Health and metrics are served at once; readiness waits for NATS and the
    directory (NATS may come up after this service).
    """
    registry = CollectorRegistry()
    conn = NatsConnection("rooms", registry)
    started = asyncio.Event()
    with shutdown_signals() as stop:
        async with serve_ops(
            settings.metrics_host,
            settings.metrics_port,
            lambda: started.is_set() and conn.connected,
            registry,
        ) as port:
            log.info("service.listening", service="rooms", port=port)
            if not await connect_unless_stopped(conn, settings, stop):
                return 0
            try:
                directory = _directory(settings, conn, registry)
                await directory.start()
                try:
                    conn.on_reconnected.append(directory.request_resync)
                    started.set()
                    log.info(
                        "service.ready", service="rooms", port=port, ttl_s=settings.presence_ttl_s
                    )
                    return await wait_for_shutdown(conn, stop)
                finally:
                    started.clear()
                    await directory.stop()
            finally:
                await conn.drain(settings.nats_drain_timeout_s)


def _directory(settings: Settings, conn: NatsConnection, registry: CollectorRegistry) -> Directory:
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
    return directory
