"""How a service's main loop ends: a signal (exit 0) or a NATS connection lost for good (exit 1)."""

from __future__ import annotations

import asyncio
import signal

import structlog

from .natsconn import NatsConnection

__all__ = ["wait_for_shutdown"]

log = structlog.get_logger(__name__)


async def wait_for_shutdown(conn: NatsConnection) -> int:
    """Wait for SIGTERM/SIGINT or for the NATS connection to close for good.

    Returns:
        The process exit code: 0 after a signal, 1 when NATS gave up (so that the
        supervisor restarts the service instead of keeping a zombie alive).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(conn.closed.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if stop.is_set():
        log.info("service.stopping", reason="signal")
        return 0
    log.error("service.stopping", reason="nats connection closed")
    return 1
