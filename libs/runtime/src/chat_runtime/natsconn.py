"""The one NATS connection of a service, with every option spelled out.

Reconnects are logged and counted. When nats-py gives up (reconnect attempts
exhausted) the connection is closed for good: :attr:`NatsConnection.closed` is set,
and the service must exit non-zero so its supervisor restarts it, never linger as
a zombie that looks alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import nats
import nats.errors
import structlog
from nats.aio.client import Client
from prometheus_client import CollectorRegistry, Counter, Gauge

from .settings import CommonSettings

__all__ = ["NatsConnection", "connect_nats"]

log = structlog.get_logger(__name__)


class NatsConnection:
    """A connected client plus what the service needs to watch it.

    Attributes:
        client: The nats-py client.
        closed: Set when the connection is closed for good.
    """

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.client: Client = Client()
        self.closed: Final = asyncio.Event()
        #: Awaited after each reconnect (to re-sync state that may have been missed).
        self.on_reconnected: list[Callable[[], Awaitable[None]]] = []
        self._closing = False
        self._service = service
        self._connected = Gauge(
            f"chat_{service}_nats_connected",
            "1 while the NATS connection is up, 0 while it is down",
            registry=registry,
        )
        self._reconnects = Counter(
            f"chat_{service}_nats_reconnects_total",
            "Times the NATS connection was re-established",
            registry=registry,
        )
        self._errors = Counter(
            f"chat_{service}_nats_errors_total",
            "Errors reported by the NATS client",
            registry=registry,
        )

    @property
    def connected(self) -> bool:
        return self.client.is_connected

    async def _on_error(self, exc: Exception) -> None:
        self._errors.inc()
        log.warning("nats.error", error=type(exc).__name__, detail=str(exc)[:200])

    async def _on_disconnected(self) -> None:
        self._connected.set(0)
        log.warning("nats.disconnected")

    async def _on_reconnected(self) -> None:
        self._connected.set(1)
        self._reconnects.inc()
        log.info("nats.reconnected", server=_server_of(self.client))
        for callback in self.on_reconnected:
            try:
                await callback()
            except Exception:
                log.exception("nats.reconnect_callback_failed")

    async def _on_closed(self) -> None:
        self._connected.set(0)
        if self._closing:
            log.info("nats.closed", reason="shutdown")
        else:
            log.error("nats.closed", reason="reconnect attempts exhausted")
        self.closed.set()

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Deliver what is buffered, unsubscribe, and close (bounded)."""
        self._closing = True
        if self.client.is_closed:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self.client.drain()
        except (TimeoutError, nats.errors.Error):
            log.warning("nats.drain_incomplete")
        if not self.client.is_closed:
            await self.client.close()


async def connect_nats(
    settings: CommonSettings, service: str, registry: CollectorRegistry
) -> NatsConnection:
    """Connect to NATS as ``chat-<service>``.

    Raises:
        ConnectionError: The first connection attempt failed (the service exits).
    """
    conn = NatsConnection(service, registry)
    try:
        await conn.client.connect(
            servers=settings.nats_servers,
            name=f"chat-{service}",
            connect_timeout=2,
            allow_reconnect=True,
            max_reconnect_attempts=settings.nats_max_reconnect_attempts,
            reconnect_time_wait=settings.nats_reconnect_wait_s,  # type: ignore[arg-type]
            ping_interval=20,  # detect a dead server within ~1 min, not nats-py's 4 min
            max_outstanding_pings=3,
            pending_size=settings.nats_pending_bytes,
            error_cb=conn._on_error,
            disconnected_cb=conn._on_disconnected,
            reconnected_cb=conn._on_reconnected,
            closed_cb=conn._on_closed,
        )
    except (OSError, nats.errors.Error) as exc:
        raise ConnectionError(f"cannot connect to NATS at {settings.nats_url}") from exc
    conn._connected.set(1)
    log.info("nats.connected", server=_server_of(conn.client))
    return conn


def _server_of(client: Client) -> str | None:
    url = client.connected_url
    return None if url is None else f"{url.hostname}:{url.port}"
