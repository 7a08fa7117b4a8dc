"""The announcer service: the periodic system announcement, once per room per period."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from chat_announcements.errors import LeaseUnavailable
from chat_announcements.worker import announcement_worker
from chat_protocol import subjects
from chat_runtime.lifecycle import run_nats_service
from chat_runtime.natsconn import NatsConnection
from falcon_pachinko import WorkerController

from .lease import KvPeriodLease
from .metrics import Metrics
from .rooms import ClusterRooms
from .settings import Settings

__all__ = ["run"]

log = structlog.get_logger(__name__)


async def run(settings: Settings) -> int:
    """Serve until a signal (exit 0) or until NATS is lost for good (exit 1).

    Health and metrics are served at once; readiness waits for NATS (which may
    come up after this service) and the announcement worker.
    """
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    conn = NatsConnection("announcer", registry)

    @contextlib.asynccontextmanager
    async def worker_running() -> AsyncIterator[dict[str, Any]]:
        controller = WorkerController()
        try:
            await _start(settings, conn, controller, metrics)
            yield {
                "interval_s": settings.announce_interval_s,
                "room_prefix": settings.announce_room_prefix,
                "bucket": settings.announce_lease_bucket,
            }
        finally:
            await controller.stop()

    address = (settings.metrics_host, settings.metrics_port)
    return await run_nats_service("announcer", settings, conn, registry, address, worker_running)


async def _start(
    settings: Settings, conn: NatsConnection, controller: WorkerController, metrics: Metrics
) -> None:
    lease = KvPeriodLease(
        conn.client,
        bucket=settings.announce_lease_bucket,
        interval_s=settings.announce_interval_s,
        owner=f"{socket.gethostname()}/{os.getpid()}",
        replicas=settings.announce_lease_replicas,
    )
    await _prepare(lease)
    await controller.start(
        announcement_worker,
        conn_mgr=ClusterRooms(conn.client, subjects.PREFIX),
        interval_s=settings.announce_interval_s,
        text=settings.announce_text,
        room_prefix=settings.announce_room_prefix,
        lease=lease,
        metrics=metrics,
    )


async def _prepare(lease: KvPeriodLease) -> None:
    # Not fatal: JetStream may come back before the first period; until then each
    # period is skipped and logged by the worker.
    try:
        await lease.prepare()
    except LeaseUnavailable as exc:
        log.warning("announcer.lease_unavailable", bucket=lease.bucket, error=str(exc))
