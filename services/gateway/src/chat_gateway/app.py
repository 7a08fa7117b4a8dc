"""The composition root: builds the gateway's Falcon app from its settings."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any, Final, cast

import falcon
import falcon.asgi
import structlog

import falcon_pachinko
from chat_announcer.worker import announcement_worker
from falcon_pachinko import Backend, ConnectionLimits, PachinkoApp, WorkerController

from .auth import DevAuthMiddleware
from .resources import ChatRoomResource
from .settings import Settings

__all__ = ["CHAT_ROUTE", "create_app"]

log = structlog.get_logger(__name__)

CHAT_ROUTE: Final = "/ws/chat/{room_name}"

# The page is one self-contained file; nothing it loads comes from elsewhere.
_PAGE_CSP: Final = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class _IndexPage:
    @functools.cached_property
    def body(self) -> bytes:
        return (resources.files(__package__) / "static" / "index.html").read_bytes()

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.data = self.body
        resp.set_header("Content-Security-Policy", _PAGE_CSP)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")


class _Health:
    """Liveness: the event loop answers. Readiness: the app finished starting."""

    def __init__(self) -> None:
        self.ready = False

    async def on_get_live(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"status": "ok"}

    async def on_get_ready(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"status": "ready" if self.ready else "starting"}
        resp.status = falcon.HTTP_200 if self.ready else falcon.HTTP_503


def create_app(
    settings: Settings,
    backend: Backend | None = None,
    *,
    on_ready: Callable[[], None] | None = None,
) -> falcon.asgi.App[Any, Any]:
    """Build the gateway app.

    Args:
        settings: The gateway's settings.
        backend: Room traffic backend; ``None`` for a single process.
        on_ready: Called once startup has finished (the entrypoint prints its banner).
    """
    if settings.auth == "dev":
        log.warning(
            "auth.development_mode", detail="the user query parameter is trusted without proof"
        )
    app = falcon.asgi.App(middleware=[DevAuthMiddleware()])
    limits = ConnectionLimits(
        max_queue_messages=settings.outbound_queue_messages,
        max_queue_bytes=settings.outbound_queue_bytes,
        close_timeout_s=settings.close_timeout_s,
    )
    conn_mgr = falcon_pachinko.install(app, backend, limits=limits)
    ws_app = cast(PachinkoApp, app)
    ws_app.add_websocket_route(CHAT_ROUTE, ChatRoomResource)
    health = _Health()
    app.add_route("/healthz", health, suffix="live")
    app.add_route("/readyz", health, suffix="ready")
    app.add_route("/", _IndexPage())
    controller = WorkerController()

    @ws_app.lifespan
    async def lifespan(app_instance: Any) -> AsyncIterator[None]:
        if settings.announce_interval_s > 0:
            await controller.start(
                announcement_worker,
                conn_mgr=conn_mgr,
                interval_s=settings.announce_interval_s,
                text=settings.announce_text,
                room_prefix=settings.announce_room_prefix,
            )
        health.ready = True
        if on_ready is not None:
            on_ready()
        yield
        health.ready = False
        await controller.stop()

    return app
