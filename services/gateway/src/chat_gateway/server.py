"""Serving the gateway's app: uvicorn's options, the banner, and how serving ends.

The gateway handles SIGINT and SIGTERM itself (:class:`chat_runtime.server.Server`
with ``handle_signals``): the ``on_exit`` callbacks run first (readiness fails, so
the load balancer stops sending clients), then uvicorn shuts down gracefully
(clients get ``CloseCode.SERVICE_RESTART`` and may reconnect elsewhere), and only
then does the caller drain NATS. A NATS connection closed for good takes the same
path and exits 1.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Callable, Iterable
from typing import Any

import structlog
import uvicorn

from chat_runtime.natsconn import NatsConnection
from chat_runtime.server import Server

from .httpguard import header_deadline_protocol
from .settings import Settings

__all__ = ["Draining", "banner", "serve", "uvicorn_options"]

log = structlog.get_logger(__name__)


class Draining:
    """Set once shutdown begins, so that readiness fails before connections close."""

    def __init__(self) -> None:
        self.now = False

    def set(self) -> None:
        self.now = True


async def serve(
    settings: Settings,
    app: Any,
    conn: NatsConnection | None,
    *,
    on_exit: Iterable[Callable[[], None]] = (),
) -> int:
    """Serve ``app`` until a signal or until ``conn`` is closed for good.

    Args:
        settings: The gateway's settings (address, WebSocket limits).
        app: The ASGI app.
        conn: The NATS connection to watch; ``None`` for the single-process mode.
        on_exit: Run when shutdown begins, before uvicorn's graceful shutdown.

    Returns:
        The exit code: 0 after a signal, 1 when NATS was lost for good or the
        server could not start (the port is taken, say).
    """
    server = Server(
        uvicorn.Config(app, **uvicorn_options(settings)),
        handle_signals=True,
        on_exit=on_exit,
        on_started=lambda port: _announce(settings, port),
    )
    serving = asyncio.create_task(server.run_until_exit(), name="uvicorn")
    waiters: list[asyncio.Future[Any]] = [serving]
    if conn is not None:
        waiters.append(asyncio.ensure_future(conn.closed.wait()))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    nats_lost = not serving.done()
    if nats_lost:
        log.error("service.stopping", reason="nats connection closed")
        server.request_exit()
    for waiter in waiters[1:]:
        waiter.cancel()
    started = await serving
    if not started:
        print(f"chat-gateway: cannot serve on {settings.host}:{settings.port}", file=sys.stderr)
        return 1
    return 1 if nats_lost else 0


def _announce(settings: Settings, port: int) -> None:
    print(banner(settings, port), flush=True)
    log.info("service.ready", service="gateway", port=port)


def uvicorn_options(
    settings: Settings, on_header_timeout: Callable[[], None] | None = None
) -> dict[str, Any]:
    """uvicorn's options, every WebSocket limit spelled out (tests reuse them).

    Args:
        settings: The gateway's settings.
        on_header_timeout: Called for each connection dropped because its request
            headers took longer than ``CHAT_HANDSHAKE_TIMEOUT_S``.
    """
    return {
        "host": settings.host,
        "port": settings.port,
        # httptools, with a deadline for request headers (slowloris).
        "http": header_deadline_protocol(
            settings.handshake_timeout_s, on_header_timeout or _log_header_timeout
        ),
        "ws": "websockets-sansio",
        # Never uvicorn's 16 MiB default: larger frames close with MESSAGE_TOO_BIG.
        "ws_max_size": settings.ws_max_bytes,
        "ws_ping_interval": settings.ws_ping_interval_s,
        "ws_ping_timeout": settings.ws_ping_timeout_s,
        "ws_per_message_deflate": False,
        "lifespan": "on",
        "log_config": None,
        "server_header": False,
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_timeout_s),
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }


def _log_header_timeout() -> None:
    log.warning("http.header_timeout")


def banner(settings: Settings, port: int | None = None) -> str:
    """What a person starting the gateway needs to know to connect."""
    base = f"{settings.host}:{port if port is not None else settings.port}"
    lines = [f"Chat is running on http://{base}/ - open it in a browser."]
    if settings.auth == "dev":
        lines.append(
            f"WebSocket clients: ws://{base}/ws/chat/<room>?user=<name>"
            " (development mode: the name is trusted as given)"
        )
    else:
        lines.append(
            f"WebSocket clients: ws://{base}/ws/chat/<room>?token=<token>"
            " (get a token with `chat token NAME`)"
        )
    return "\n".join(lines)
