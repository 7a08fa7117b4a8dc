"""What the NATS broker and the NATS presence share: headers, errors, publishing, flushing.

Nothing here holds state; each function takes the client it works on.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import nats.errors
import structlog
from nats.aio.client import Client

from ...errors import BackendError

__all__ = [
    "EXCLUDE_HEADER",
    "ORIGIN_HEADER",
    "UNAVAILABLE",
    "close_client",
    "flush_sent",
    "log_error",
    "log_event",
    "publish",
]

log = structlog.get_logger("falcon_pachinko.backends.nats")

#: The node that published a room message.
ORIGIN_HEADER: Final = "Pachinko-Origin"
#: The one connection that must not receive a room message.
EXCLUDE_HEADER: Final = "Pachinko-Exclude"

#: Errors nats-py raises when it cannot take a publish or a request now.
UNAVAILABLE: Final = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
)


async def publish(nc: Client, subject: str, data: bytes, headers: dict[str, str]) -> None:
    """Publish, turning the client's "cannot take it now" errors into :class:`BackendError`.

    While the client reconnects, publishes wait in its bounded buffer and go out on
    reconnect, in order; once the buffer is full this raises.
    """
    try:
        await nc.publish(subject, data, headers=headers or None)
    except UNAVAILABLE as exc:
        raise BackendError("NATS is unavailable; the message was not sent") from exc
    except nats.errors.MaxPayloadError as exc:
        raise BackendError("the message is larger than NATS accepts; not sent") from exc


async def flush_sent(nc: Client, timeout_s: float) -> None:
    """Return once the server has processed every command sent so far (bounded).

    A subscription made before this returns is in effect. Offline, nothing is
    awaited: nats-py re-sends subscriptions when it reconnects.
    """
    if not nc.is_connected:
        return
    with contextlib.suppress(*UNAVAILABLE, nats.errors.TimeoutError, TimeoutError):
        async with asyncio.timeout(timeout_s):
            # NOTE: nats-py writes flush()'s PING to the socket at once, ahead of
            # commands still queued for its flusher task (a SUB just made), so the
            # PONG could return before the server has them. Hand the queued
            # commands to the socket first (private API: recheck on upgrades).
            await nc._flush_pending(force_flush=True)
            await nc.flush()


async def close_client(nc: Client, timeout_s: float) -> None:
    """Drain and close a client this library opened (bounded)."""
    try:
        async with asyncio.timeout(timeout_s):
            await nc.drain()
    except (TimeoutError, *UNAVAILABLE):
        pass
    if not nc.is_closed:
        # While reconnecting, nats-py's close writes the reconnect buffer to the
        # dead socket and raises; what was buffered is lost either way.
        with contextlib.suppress(OSError):
            await nc.close()


async def log_error(exc: Exception) -> None:
    log.warning("pachinko.nats_error", error=type(exc).__name__, detail=str(exc)[:200])


def log_event(event: str) -> Any:
    async def callback() -> None:
        log.info(event)

    return callback
