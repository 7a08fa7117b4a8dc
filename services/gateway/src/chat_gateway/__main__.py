"""``chat-gateway``: serve the chat over WebSockets with uvicorn (uvloop, httptools)."""

from __future__ import annotations

import sys
from typing import Any

from prometheus_client import CollectorRegistry

from chat_protocol import subjects
from chat_runtime.entrypoint import service_main
from chat_runtime.natsconn import NatsConnection
from chat_runtime.ops import ops_app
from falcon_pachinko.backends.nats import NatsBackend

from .app import create_app
from .server import Draining, Gate, exit_callbacks, serve
from .settings import Settings, load_settings


def main() -> int:
    return service_main("chat-gateway", load_settings, run)


async def run(settings: Settings) -> int:
    """Serve until a signal (exit 0), or until NATS is lost for good (exit 1).

    With NATS, the gateway listens at once and opens the chat when NATS answers.
    """
    registry = CollectorRegistry()
    draining = Draining()
    if settings.backend == "memory":
        app = create_app(settings, registry=registry, ready=lambda: not draining.now)
        return await serve(settings, app, None, on_exit=exit_callbacks(lambda: app, draining))
    conn = NatsConnection("gateway", registry)

    def ready() -> bool:
        return conn.connected and not draining.now

    async def open_chat() -> Any:
        await conn.connect(settings)  # tries until NATS answers
        backend = NatsBackend(
            client=conn.client,
            subject_prefix=subjects.PREFIX,
            heartbeat_interval_s=settings.heartbeat_interval_s,
        )
        return create_app(settings, backend, registry=registry, ready=ready)

    gate = Gate(ops_app(lambda: False, registry), ready, open_chat)
    try:
        return await serve(settings, gate, conn, on_exit=exit_callbacks(lambda: gate.app, draining))
    finally:
        await conn.drain(settings.nats_drain_timeout_s)


if __name__ == "__main__":
    sys.exit(main())
