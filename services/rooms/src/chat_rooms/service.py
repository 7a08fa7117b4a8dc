"""The rooms service's composition root: the membership directory, wired to the chat's rules."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from chat_protocol.subjects import PREFIX as SUBJECT_PREFIX
from chat_runtime.lifecycle import run_nats_service
from chat_runtime.natsconn import NatsConnection
from falcon_pachinko.backends.nats import KvLease, NatsBroker, new_node_id
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

    @contextlib.asynccontextmanager
    async def directory_running() -> AsyncIterator[dict[str, Any]]:
        directory = _directory(settings, conn, registry)
        await directory.start()
        conn.on_reconnected.append(directory.request_resync)
        try:
            yield {
                "ttl_s": settings.presence_ttl_s,
                "replica": directory.replica,
                "lease_bucket": settings.rooms_lease_bucket or None,
            }
        finally:
            # What it decided last is announced, then its lease is let go.
            await directory.stop()

    address = (settings.metrics_host, settings.metrics_port)
    return await run_nats_service("rooms", settings, conn, registry, address, directory_running)


def _directory(settings: Settings, conn: NatsConnection, registry: CollectorRegistry) -> Directory:
    lease = (
        KvLease(
            conn.client,
            bucket=settings.rooms_lease_bucket,
            replicas=settings.rooms_lease_replicas,
        )
        if settings.rooms_lease_bucket
        else None
    )
    directory = Directory(
        conn.client,
        Subjects(SUBJECT_PREFIX),
        ttl_s=settings.presence_ttl_s,
        grace_s=settings.presence_grace_s,
        expiry_interval_s=settings.presence_check_interval_s,
        name="chat-rooms",
        # Arrivals that come close together are announced together: one write per
        # member per batch on the gateways, not one per arrival.
        batch_s=settings.presence_batch_s,
        lease=lease,
        lease_ttl_s=settings.rooms_lease_ttl_s,
    )
    metrics = Metrics(registry, directory)
    broker = NatsBroker(conn.client, Subjects(SUBJECT_PREFIX), new_node_id())
    rules = PresenceRules(broker, metrics)
    directory.on_lost = rules.on_lost
    directory.on_presence = rules.on_presence
    return directory
