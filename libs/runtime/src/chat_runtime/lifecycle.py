"""How a service's main loop goes: connect while serving health, then run until a signal.

A service without a web server of its own (rooms, announcer) runs
:func:`run_nats_service`: it holds :func:`shutdown_signals` for its whole life,
serves its health endpoints, then::

    if not await connect_unless_stopped(conn, settings, stop):
        return 0  # SIGTERM while NATS was still unreachable
    ...  # start the work that needs NATS, become ready
    return await wait_for_shutdown(conn, stop)

It ends with a signal (exit 0) or with the NATS connection lost for good (exit 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from .natsconn import NatsConnection
from .ops import serve_ops
from .settings import CommonSettings

__all__ = [
    "Work",
    "run_nats_service",
    "cancel_and_wait",
    "connect_unless_stopped",
    "shutdown_signals",
    "wait_for_shutdown",
]

log = structlog.get_logger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def cancel_and_wait(task: asyncio.Future[Any], bound_s: float = 5.0) -> None:
    """Cancel ``task`` and wait until it has ended (bounded).

    The cancellation is repeated: on Python 3.11 ``asyncio.wait_for`` (which
    nats-py uses to open each connection) loses a cancellation that arrives just
    as the connection attempt fails, and nats-py then simply tries the next server.
    """
    try:
        async with asyncio.timeout(bound_s):
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.05)
    except TimeoutError:
        log.error("service.task_not_cancelled", task=repr(task)[:200])
        return
    if not task.cancelled() and task.exception() is not None:
        log.warning("service.task_failed_while_cancelled", error=repr(task.exception())[:200])


@contextlib.contextmanager
def shutdown_signals() -> Iterator[asyncio.Event]:
    """Within the block, SIGTERM and SIGINT set the yielded event (and do nothing else)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


async def connect_unless_stopped(
    conn: NatsConnection, settings: CommonSettings, stop: asyncio.Event
) -> bool:
    """Connect ``conn`` (trying until NATS answers) unless ``stop`` is set first.

    Returns:
        ``True`` once connected, ``False`` when ``stop`` came first.

    Raises:
        ConnectionError: ``CHAT_NATS_CONNECT_TIMEOUT_S`` passed first.
    """
    connecting = asyncio.ensure_future(conn.connect(settings))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([connecting, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not connecting.done():
            await cancel_and_wait(connecting)
    if connecting.cancelled() or not connecting.done():
        log.info("service.stopping", reason="signal", nats="never connected")
        return False
    connecting.result()  # raises ConnectionError on the connect timeout
    return True


async def wait_for_shutdown(conn: NatsConnection, stop: asyncio.Event) -> int:
    """Wait for ``stop`` (a signal) or for the NATS connection to close for good.

    Returns:
        The process exit code: 0 after a signal, 1 when NATS gave up (so that the
        supervisor restarts the service instead of keeping a zombie alive).
    """
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(conn.closed.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if stop.is_set():
        log.info("service.stopping", reason="signal")
        return 0
    log.error("service.stopping", reason="nats connection closed")
    return 1


#: Starts a service's work once NATS answers; yields what ``service.ready`` logs.
Work = Callable[[], AbstractAsyncContextManager[Mapping[str, Any]]]


async def run_nats_service(
    service: str,
    settings: CommonSettings,
    conn: NatsConnection,
    registry: CollectorRegistry,
    ops_address: tuple[str, int],
    work: Work,
) -> int:
    """Serve health at once, connect, run ``work`` until a signal or NATS is lost.

    Readiness (``/readyz``) holds only while ``work`` runs and NATS is connected.

    Args:
        service: The service's name in logs (``rooms``, ``announcer``).
        settings: Its settings (NATS options, drain timeout).
        conn: Its NATS connection, not yet connected.
        registry: Its metrics, served on ``/metrics``.
        ops_address: Where health and metrics are served (host, port; 0: any).
        work: Started once connected, stopped at shutdown.

    Returns:
        The exit code: 0 after a signal, 1 when NATS was lost for good.
    """
    started = asyncio.Event()

    def ready() -> bool:
        return started.is_set() and conn.connected

    with shutdown_signals() as stop:
        host, port = ops_address
        async with serve_ops(host, port, ready, registry) as bound:
            log.info("service.listening", service=service, port=bound)
            if not await connect_unless_stopped(conn, settings, stop):
                return 0
            try:
                async with work() as fields:
                    started.set()
                    log.info("service.ready", service=service, port=bound, **fields)
                    try:
                        return await wait_for_shutdown(conn, stop)
                    finally:
                        started.clear()
            finally:
                await conn.drain(settings.nats_drain_timeout_s)
