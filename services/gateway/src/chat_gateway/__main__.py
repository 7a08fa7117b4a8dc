"""``chat-gateway``: serve the chat over WebSockets with uvicorn (uvloop, httptools)."""

from __future__ import annotations

import functools
import sys
from typing import Any

from prometheus_client import CollectorRegistry

from chat_protocol import subjects
from chat_runtime.entrypoint import service_main
from chat_runtime.natsconn import NatsConnection
from chat_runtime.ops import ops_app
from falcon_pachinko.backends.nats import NatsBackend, NatsProbe
from falcon_pachinko.subjects import Subjects

from .app import create_app, history_config, recheck_on_reconnect
from .metrics import Metrics
from .server import Draining, Gate, drain_clients, exit_callbacks, serve
from .settings import Settings, load_settings


def main() -> int:
    return service_main("chat-gateway", load_settings, run)


async def run(settings: Settings) -> int:
    """Serve until a signal (exit 0), or until NATS is lost for good (exit 1).

    With NATS, the gateway listens at once and opens the chat when NATS answers.
    """
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    slow_headers = functools.partial(metrics.reject, "header_timeout")
    draining = Draining()
    if settings.backend == "memory":
        app = create_app(
            settings, registry=registry, ready=lambda: not draining.now, metrics=metrics
        )
        exits = exit_callbacks(lambda: app, draining)
        drain = drain_clients(lambda: app, settings.drain_s)
        return await serve(
            settings, app, None, on_exit=exits, on_header_timeout=slow_headers, drain=drain
        )
    conn = NatsConnection("gateway", registry)
    probe: NatsProbe | None = None

    def ready() -> bool:
        hearing = probe is None or probe.hearing()
        return conn.connected and hearing and not draining.now

    async def open_chat() -> Any:
        await conn.connect(settings)  # tries until NATS answers
        backend = NatsBackend(
            client=conn.client,
            subject_prefix=subjects.PREFIX,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            history=history_config(settings),
        )
        app = create_app(settings, backend, registry=registry, ready=ready, metrics=metrics)
        conn.on_reconnected.append(recheck_on_reconnect(app))
        if settings.probe_interval_s > 0:
            nonlocal probe
            probe = NatsProbe(
                conn.client,
                Subjects(subjects.PREFIX),
                backend.node_id,
                interval_s=settings.probe_interval_s,
                timeout_s=settings.probe_timeout_s,
                on_return=metrics.probe_rtt.observe,
            )
            metrics.watch_probe(probe)
            await probe.start()
        return app

    not_ready = functools.partial(metrics.reject, "not_ready")
    gate = Gate(ops_app(lambda: False, registry), ready, open_chat, on_refused=not_ready)
    exits = exit_callbacks(lambda: gate.app, draining)
    drain = drain_clients(lambda: gate.app, settings.drain_s)
    try:
        return await serve(
            settings, gate, conn, on_exit=exits, on_header_timeout=slow_headers, drain=drain
        )
    finally:
        if probe is not None:
            await probe.stop()
        await conn.drain(settings.nats_drain_timeout_s)


if __name__ == "__main__":
    sys.exit(main())
