"""The announcer service: the periodic system announcement, once per room per period."""

from __future__ import annotations

import asyncio
import os
import socket

import structlog
from prometheus_client import CollectorRegistry

from chat_announcements.errors import LeaseUnavailable
from chat_announcements.worker import announcement_worker
from chat_protocol import subjects
from chat_runtime.lifecycle import connect_unless_stopped, shutdown_signals, wait_for_shutdown
from chat_runtime.natsconn import NatsConnection
from chat_runtime.ops import serve_ops
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
    started = asyncio.Event()
    with shutdown_signals() as stop:
        async with serve_ops(
            settings.metrics_host,
            settings.metrics_port,
            lambda: started.is_set() and conn.connected,
            registry,
        ) as port:
            log.info("service.listening", service="announcer", port=port)
            if not await connect_unless_stopped(conn, settings, stop):
                return 0
            controller = WorkerController()
            try:
                await _start(settings, conn, controller, metrics)
                started.set()
                log.info(
                    "service.ready",
                    port=port,
                    service="announcer",
                    interval_s=settings.announce_interval_s,
                    room_prefix=settings.announce_room_prefix,
                    bucket=settings.announce_lease_bucket,
                )
                return await wait_for_shutdown(conn, stop)
            finally:
                started.clear()
                await controller.stop()
                await conn.drain(settings.nats_drain_timeout_s)


async def _start(
    settings: Settings, conn: NatsConnection, controller: WorkerController, metrics: Metrics
) -> None:
    lease = KvPeriodLease(
        conn.client,
        bucket=settings.announce_lease_bucket,
        interval_s=settings.announce_interval_s,
        owner=f"{socket.gethostname()}/{os.getpid()}",
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
