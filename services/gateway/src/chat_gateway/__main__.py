"""``chat-gateway``: serve the chat over WebSockets with uvicorn (uvloop, httptools)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import CollectorRegistry

from chat_protocol import subjects
from chat_runtime.entrypoint import service_main
from chat_runtime.natsconn import connect_nats
from falcon_pachinko import PachinkoApp
from falcon_pachinko.backends.nats import NatsBackend

from .app import create_app
from .server import Draining, serve
from .settings import Settings, load_settings


def main() -> int:
    return service_main("chat-gateway", load_settings, run)


async def run(settings: Settings) -> int:
    """Serve until a signal (exit 0), or until NATS is lost for good (exit 1)."""
    registry = CollectorRegistry()
    if settings.backend == "memory":
        draining = Draining()
        app = create_app(settings, registry=registry, ready=lambda: not draining.now)
        return await serve(settings, app, None, on_exit=_on_exit(app, draining))
    conn = await connect_nats(settings, "gateway", registry)
    backend = NatsBackend(
        client=conn.client,
        subject_prefix=subjects.PREFIX,
        heartbeat_interval_s=settings.heartbeat_interval_s,
    )
    draining = Draining()
    app = create_app(
        settings, backend, registry=registry, ready=lambda: conn.connected and not draining.now
    )
    try:
        return await serve(settings, app, conn, on_exit=_on_exit(app, draining))
    finally:
        await conn.drain(settings.nats_drain_timeout_s)


def _on_exit(app: Any, draining: Draining) -> list[Callable[[], None]]:
    # Readiness fails first; presence is held, since clients are about to get 1012
    # and reconnect elsewhere (no one is announced as left or joined meanwhile).
    return [draining.set, cast(PachinkoApp, app).ws_connection_manager.begin_shutdown]


if __name__ == "__main__":
    sys.exit(main())
