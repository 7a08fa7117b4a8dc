"""Health and metrics endpoints: ``/healthz``, ``/readyz``, ``/metrics``.

* Liveness (``/healthz``) says only that the event loop answers.
* Readiness (``/readyz``) runs the service's check (NATS connected, started).
* ``/metrics`` is the Prometheus text exposition of the service's registry.

The gateway mounts these routes on its own app; the rooms service and the announcer
serve them on a small uvicorn server of their own (:func:`serve_ops`), which leaves
signals to the service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import falcon
import falcon.asgi
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .server import Server

__all__ = ["add_ops_routes", "ops_app", "serve_ops"]


class _Health:
    def __init__(self, ready: Callable[[], bool]) -> None:
        self._ready = ready

    async def on_get_live(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"status": "ok"}

    async def on_get_ready(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ready = self._ready()
        resp.media = {"status": "ready" if ready else "not ready"}
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self._registry)


def add_ops_routes(
    app: falcon.asgi.App[Any, Any], ready: Callable[[], bool], registry: CollectorRegistry
) -> None:
    """Add ``/healthz``, ``/readyz`` and ``/metrics`` to ``app``."""
    health = _Health(ready)
    app.add_route("/healthz", health, suffix="live")
    app.add_route("/readyz", health, suffix="ready")
    app.add_route("/metrics", _Metrics(registry))


def ops_app(ready: Callable[[], bool], registry: CollectorRegistry) -> falcon.asgi.App[Any, Any]:
    """A Falcon app with only the ops routes."""
    app: falcon.asgi.App[Any, Any] = falcon.asgi.App()
    add_ops_routes(app, ready, registry)
    return app


@contextlib.asynccontextmanager
async def serve_ops(
    host: str, port: int, ready: Callable[[], bool], registry: CollectorRegistry
) -> AsyncIterator[int]:
    """Serve the ops routes on ``host:port`` for the duration of the block.

    Yields:
        The bound port (useful with ``port=0``, which picks a free one).

    Raises:
        OSError: The port cannot be bound.
    """
    config = uvicorn.Config(
        ops_app(ready, registry),
        host=host,
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
    )
    server = Server(config)  # no signal handlers: the service has its own
    task = asyncio.create_task(server.run_until_exit(), name="ops-server")
    await server.startup_done.wait()
    if not server.started:
        await task
        raise OSError(f"cannot serve health and metrics on {host}:{port}")
    try:
        yield server.port
    finally:
        server.request_exit()
        await task
