"""``chat-gateway``: serve the chat over WebSockets with uvicorn (uvloop, httptools)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import sys
from collections.abc import Iterator
from typing import Any

import structlog
import uvicorn
from prometheus_client import CollectorRegistry

from chat_protocol import subjects
from chat_runtime.entrypoint import service_main
from chat_runtime.natsconn import NatsConnection, connect_nats
from chat_runtime.ops import bound_port
from falcon_pachinko.backends.nats import NatsBackend

from .app import create_app
from .settings import Settings, load_settings

log = structlog.get_logger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def main() -> int:
    return service_main("chat-gateway", load_settings, run)


async def run(settings: Settings) -> int:
    """Serve until a signal (exit 0), or until NATS is lost for good (exit 1)."""
    registry = CollectorRegistry()
    if settings.backend == "memory":
        draining = _Draining()
        app = create_app(settings, registry=registry, ready=lambda: not draining.now)
        return await _serve(settings, app, None, draining)
    conn = await connect_nats(settings, "gateway", registry)
    backend = NatsBackend(
        client=conn.client,
        subject_prefix=subjects.PREFIX,
        heartbeat_interval_s=settings.heartbeat_interval_s,
    )
    draining = _Draining()
    app = create_app(
        settings, backend, registry=registry, ready=lambda: conn.connected and not draining.now
    )
    try:
        return await _serve(settings, app, conn, draining)
    finally:
        await conn.drain(settings.nats_drain_timeout_s)


class _Draining:
    """Set once shutdown begins, so that readiness fails before connections close."""

    now = False


async def _serve(
    settings: Settings, app: Any, conn: NatsConnection | None, draining: _Draining
) -> int:
    server = GatewayServer(uvicorn.Config(app, **uvicorn_options(settings)), settings, draining)
    serving = asyncio.create_task(_run_server(server), name="uvicorn")
    waiters: list[asyncio.Future[Any]] = [serving]
    if conn is not None:
        waiters.append(asyncio.ensure_future(conn.closed.wait()))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    nats_lost = not serving.done()
    if nats_lost:
        log.error("service.stopping", reason="nats connection closed")
        draining.now = True
        server.should_exit = True  # graceful: clients get 1012 and may reconnect elsewhere
    for waiter in waiters[1:]:
        waiter.cancel()
    started = await serving
    if not started:
        print(f"chat-gateway: cannot serve on {settings.host}:{settings.port}", file=sys.stderr)
        return 1
    return 1 if nats_lost else 0


async def _run_server(server: uvicorn.Server) -> bool:
    """Serve until shutdown; ``False`` if the server never started (port taken, say)."""
    try:
        await server.serve()
    except SystemExit:
        return False  # uvicorn exits when it cannot bind or its lifespan startup fails
    return server.started


class GatewayServer(uvicorn.Server):
    """uvicorn's server, announcing readiness once it listens."""

    def __init__(self, config: uvicorn.Config, settings: Settings, draining: _Draining) -> None:
        super().__init__(config)
        self._settings = settings
        self._draining = draining

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises a captured SIGTERM after its graceful shutdown, which
        # would kill the process before the NATS connection is drained. Handle the
        # signals here and let main() return the exit code instead.
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: Any) -> None:
        # SIGTERM/SIGINT: report not ready at once, then let uvicorn shut down.
        self._draining.now = True
        log.info("service.stopping", reason="signal", signal=sig)
        super().handle_exit(sig, frame)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = bound_port(self)
            print(banner(self._settings, port), flush=True)
            log.info("service.ready", service="gateway", port=port)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options, every WebSocket limit spelled out (tests reuse them)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": "httptools",
        "ws": "websockets-sansio",
        # Never uvicorn's 16 MiB default: frames above this close the socket with 1009.
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


if __name__ == "__main__":
    sys.exit(main())
