"""The one NATS connection of a service, with every option spelled out.

The first connection is awaited in the background while the service already
serves its health endpoints (not ready meanwhile): :meth:`NatsConnection.connect`
keeps trying until NATS answers. Each try is one ``nats.connect`` on a fresh
client, in which nats-py itself goes round every server in ``CHAT_NATS_URL``
(``CHAT_NATS_RECONNECT_WAIT_S`` apart, ``CHAT_NATS_MAX_RECONNECT_ATTEMPTS`` times
each, as for a reconnect); when a try gives up, the next starts after a back-off
that doubles up to :data:`MAX_CONNECT_BACKOFF_S`. With ``CHAT_NATS_CONNECT_TIMEOUT_S``
set, trying stops after that long and :class:`ConnectionError` is raised (the
service exits 1); by default it never stops, and the service stays not ready.

Once connected, reconnects are logged and counted. When nats-py gives up (reconnect
attempts exhausted) the connection is closed for good: :attr:`NatsConnection.closed`
is set, and the service must exit non-zero so its supervisor restarts it, never
linger as a zombie that looks alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

import nats
import nats.errors
import structlog
from nats.aio.client import Client
from prometheus_client import CollectorRegistry, Counter, Gauge

from .settings import CommonSettings

__all__ = ["MAX_CONNECT_BACKOFF_S", "NatsConnection", "connect_nats"]

log = structlog.get_logger(__name__)

#: Upper bound of the pause between two tries of the first connection.
MAX_CONNECT_BACKOFF_S: Final = 10.0


class NatsConnection:
    """A connected client plus what the service needs to watch it.

    Attributes:
        client: The nats-py client; a fresh one per try until :meth:`connect`
            returns, the connected one afterwards (build what uses it only then).
        closed: Set when the connection is closed for good.
        established: Set once the first connection succeeded.
    """

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.client: Client = Client()
        self.closed: Final = asyncio.Event()
        self.established: Final = asyncio.Event()
        #: Awaited after each reconnect (to re-sync state that may have been missed).
        self.on_reconnected: list[Callable[[], Awaitable[None]]] = []
        self._resyncing: asyncio.Task[None] | None = None
        self._resync_again = False
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
        if not self.established.is_set():
            return  # a first-connection try abandoned
        self._connected.set(0)
        log.warning("nats.disconnected")

    async def _on_reconnected(self) -> None:
        self._connected.set(1)
        self._reconnects.inc()
        log.info("nats.reconnected", server=_server_of(self.client))
        # nats-py awaits this inside its reconnect task: the callbacks (which talk
        # to NATS themselves) run in a task of their own, one round at a time; a
        # reconnect during a round asks for one more.
        self._resync_again = True
        if self._resyncing is None or self._resyncing.done():
            self._resyncing = asyncio.create_task(self._run_reconnected())

    async def _run_reconnected(self) -> None:
        while self._resync_again:
            self._resync_again = False
            for callback in self.on_reconnected:
                try:
                    await callback()
                except Exception:
                    log.exception("nats.reconnect_callback_failed")

    async def reconnected_done(self) -> None:
        """Wait for the ``on_reconnected`` callbacks of the last reconnect to finish."""
        while (task := self._resyncing) is not None and not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # the caller was cancelled
                return  # the connection was drained meanwhile

    async def _on_closed(self) -> None:
        if not self.established.is_set():
            return  # a first-connection try given up: the next one is on its way
        self._connected.set(0)
        if self._closing:
            log.info("nats.closed", reason="shutdown")
        else:
            log.error("nats.closed", reason="reconnect attempts exhausted")
        self.closed.set()

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Deliver what is buffered, unsubscribe, and close (bounded)."""
        self._closing = True
        if self._resyncing is not None:
            self._resyncing.cancel()
        if not self.established.is_set() or self.client.is_closed:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self.client.drain()
        except (TimeoutError, nats.errors.Error):
            log.warning("nats.drain_incomplete")
        if not self.client.is_closed:
            await self.client.close()

    async def connect(self, settings: CommonSettings) -> None:
        """Connect, trying until NATS answers (or until ``CHAT_NATS_CONNECT_TIMEOUT_S``).

        Raises:
            ConnectionError: The connect timeout passed first.
        """
        timeout_s = settings.nats_connect_timeout_s or None
        log.info("nats.connecting", servers=len(settings.nats_servers), timeout_s=timeout_s)
        backoff_s = settings.nats_reconnect_wait_s
        tries = 0
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    tries += 1
                    self.client = Client()
                    try:
                        await self.client.connect(**self._options(settings))
                        break
                    except (OSError, TimeoutError, nats.errors.Error) as exc:
                        log.warning(
                            "nats.unreachable",
                            tries=tries,
                            retry_in_s=round(backoff_s, 2),
                            error=type(exc).__name__,
                        )
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, MAX_CONNECT_BACKOFF_S)
        except TimeoutError:
            await self._abandon()
            raise ConnectionError(
                f"cannot connect to NATS at {settings.nats_url} "
                f"within CHAT_NATS_CONNECT_TIMEOUT_S={settings.nats_connect_timeout_s:g}"
            ) from None
        except asyncio.CancelledError:
            await self._abandon()
            raise
        self.established.set()
        self._connected.set(1)
        log.info("nats.connected", server=_server_of(self.client), tries=tries)

    async def _abandon(self) -> None:
        # A try interrupted half-way may hold a socket; close it without callbacks.
        if not self.client.is_closed:
            with contextlib.suppress(Exception):
                await self.client.close()

    def _options(self, settings: CommonSettings) -> dict[str, Any]:
        return {
            "servers": settings.nats_servers,
            "name": f"chat-{self._service}",
            "connect_timeout": 2,
            "allow_reconnect": True,
            "max_reconnect_attempts": settings.nats_max_reconnect_attempts,
            "reconnect_time_wait": settings.nats_reconnect_wait_s,
            "ping_interval": 20,  # detect a dead server within ~1 min, not nats-py's 4 min
            "max_outstanding_pings": 3,
            "pending_size": settings.nats_pending_bytes,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
        }


async def connect_nats(
    settings: CommonSettings, service: str, registry: CollectorRegistry
) -> NatsConnection:
    """Connect to NATS as ``chat-<service>``, trying until it answers.

    Raises:
        ConnectionError: ``CHAT_NATS_CONNECT_TIMEOUT_S`` passed first.
    """
    conn = NatsConnection(service, registry)
    await conn.connect(settings)
    return conn


def _server_of(client: Client) -> str | None:
    url = client.connected_url
    return None if url is None else f"{url.hostname}:{url.port}"
