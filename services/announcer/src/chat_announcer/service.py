"""The announcer service: the periodic system announcement, once per room per period."""

from __future__ import annotations

import os
import socket

import structlog
from prometheus_client import CollectorRegistry

from chat_announcements.errors import LeaseUnavailable
from chat_announcements.worker import announcement_worker
from chat_protocol import subjects
from chat_runtime.lifecycle import wait_for_shutdown
from chat_runtime.natsconn import connect_nats
from chat_runtime.ops import serve_ops
from falcon_pachinko import WorkerController

from .lease import KvPeriodLease
from .metrics import Metrics
from .rooms import ClusterRooms
from .settings import Settings

__all__ = ["run"]

log = structlog.get_logger(__name__)


async def run(settings: Settings) -> int:
    """Serve until a signal (exit 0) or until NATS is lost for good (exit 1)."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    conn = await connect_nats(settings, "announcer", registry)
    rooms = ClusterRooms(conn.client, subjects.PREFIX)
    controller = WorkerController()
    try:
        lease = KvPeriodLease(
            conn.client,
            bucket=settings.announce_lease_bucket,
            interval_s=settings.announce_interval_s,
            owner=f"{socket.gethostname()}/{os.getpid()}",
        )
        await _prepare(lease)
        await controller.start(
            announcement_worker,
            conn_mgr=rooms,
            interval_s=settings.announce_interval_s,
            text=settings.announce_text,
            room_prefix=settings.announce_room_prefix,
            lease=lease,
            metrics=metrics,
        )
        async with serve_ops(
            settings.metrics_host, settings.metrics_port, lambda: conn.connected, registry
        ) as port:
            log.info(
                "service.ready",
                port=port,
                service="announcer",
                interval_s=settings.announce_interval_s,
                room_prefix=settings.announce_room_prefix,
                bucket=settings.announce_lease_bucket,
            )
            code = await wait_for_shutdown(conn)
    finally:
        await controller.stop()
        await conn.drain(settings.nats_drain_timeout_s)
    return code


async def _prepare(lease: KvPeriodLease) -> None:
    # Not fatal: JetStream may come back before the first period; until then each
    # period is skipped and logged by the worker.
    try:
        await lease.prepare()
    except LeaseUnavailable as exc:
        log.warning("announcer.lease_unavailable", bucket=lease.bucket, error=str(exc))
