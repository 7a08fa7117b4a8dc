"""The composition root: builds the gateway's Falcon app from its settings."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any, Final, cast

import falcon
import falcon.asgi
import structlog
from prometheus_client import CollectorRegistry

import falcon_pachinko
from chat_announcements.worker import announcement_worker
from chat_protocol.history import stamp
from chat_protocol.presence import presence_announcer
from chat_runtime.ops import add_ops_routes
from falcon_pachinko import (
    Backend,
    ConnectionLimits,
    InProcessBackend,
    PachinkoApp,
    WorkerController,
)
from falcon_pachinko.backends.nats.history import NatsHistoryConfig
from falcon_pachinko.batcher import PresenceBatcher

from .auth import auth_middleware
from .metrics import Metrics
from .middleware import OriginMiddleware
from .resources import ChatRoomResource, Durability
from .rooms_api import RoomsResource
from .settings import Settings

__all__ = [
    "CHAT_ROUTE",
    "ROOMS_ROUTE",
    "connection_limits",
    "create_app",
    "durability",
    "history_config",
    "memory_backend",
    "recheck_on_reconnect",
]

log = structlog.get_logger(__name__)

CHAT_ROUTE: Final = "/ws/chat/{room_name}"
ROOMS_ROUTE: Final = "/api/rooms"

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


class _Readiness:
    """Ready once startup finished and while the backend's check passes."""

    def __init__(self, check: Callable[[], bool] | None) -> None:
        self.started = False
        self._check = check

    def __call__(self) -> bool:
        return self.started and (self._check is None or self._check())


def connection_limits(settings: Settings) -> ConnectionLimits:
    """Every per-connection limit, from the settings (no library default is used)."""
    return ConnectionLimits(
        max_queue_messages=settings.outbound_queue_messages,
        max_queue_bytes=settings.outbound_queue_bytes,
        close_timeout_s=settings.close_timeout_s,
        rate_per_s=settings.rate_per_s,
        rate_burst=settings.rate_burst,
        # One room per connection (the URL's); the library's cap is never reached.
        max_rooms=ConnectionLimits().max_rooms,
        connect_timeout_s=settings.connect_timeout_s,
    )


def durability(settings: Settings) -> Durability | None:
    """How the chat room uses durable rooms, or ``None`` with ``CHAT_HISTORY=false``."""
    if not settings.history:
        return None
    return Durability(on_join=settings.history_on_join, page_max=settings.history_page_max)


def history_config(settings: Settings) -> NatsHistoryConfig | None:
    """The JetStream history stream, as the settings say (``None``: history off)."""
    if not settings.history:
        return None
    return NatsHistoryConfig(
        max_messages_per_room=settings.history_max_messages,
        max_age_s=settings.history_max_age_s,
        max_bytes=settings.history_max_bytes,
        dedup_window_s=settings.history_dedup_window_s,
        replicas=settings.history_replicas,
        legacy_ids=settings.history_legacy_ids,
    )


def memory_backend(settings: Settings) -> InProcessBackend:
    """The single-process backend, its history bounded as the settings say."""
    return InProcessBackend(
        max_messages_per_room=settings.history_max_messages,
        max_age_s=settings.history_max_age_s,
        dedup_window_s=settings.history_dedup_window_s,
        max_bytes=settings.history_max_bytes,
    )


def recheck_on_reconnect(app: falcon.asgi.App[Any, Any]) -> Callable[[], Awaitable[None]]:
    """A NATS ``reconnected`` callback for ``app``'s connection manager.

    Durable messages stored while the gateway was cut off reached no one here; the
    rooms that missed some have their clients resume (4003).
    """
    manager = cast(PachinkoApp, app).ws_connection_manager

    async def recheck() -> None:
        await manager.recheck_rooms()

    return recheck


def create_app(
    settings: Settings,
    backend: Backend | None = None,
    *,
    registry: CollectorRegistry | None = None,
    ready: Callable[[], bool] | None = None,
    wall_clock: Callable[[], float] = time.time,
    metrics: Metrics | None = None,
) -> falcon.asgi.App[Any, Any]:
    """Build the gateway app.

    Args:
        settings: The gateway's settings.
        backend: Room traffic backend; ``None`` for the in-process one (a single
            gateway, which then also runs the announcements), with its history
            bounded by the ``CHAT_HISTORY_*`` settings.
        registry: Where the gateway's metrics go (served on ``/metrics``).
        ready: Extra readiness check (the NATS connection is up).
        metrics: The gateway's metrics, when the caller counts refusals before the
            app exists (the NATS gate, slow request headers); made here otherwise.
        wall_clock: Unix seconds, against which token expiry is measured.

    Raises:
        ValueError: ``CHAT_HISTORY`` is on and ``backend`` keeps no history.
    """
    if settings.auth == "dev":
        log.warning(
            "auth.development_mode", detail="the user query parameter is trusted without proof"
        )
    registry = registry if registry is not None else CollectorRegistry()
    metrics = metrics if metrics is not None else Metrics(registry)
    # The origin guard comes first: a foreign page costs no token work.
    guard = OriginMiddleware(settings.origin_policy, metrics.reject)
    app = falcon.asgi.App(middleware=[guard, auth_middleware(settings)])
    single_process = backend is None or isinstance(backend, InProcessBackend)
    if backend is None:
        backend = memory_backend(settings)
    if settings.history and backend.history is None:
        raise ValueError("CHAT_HISTORY is on, but the backend keeps no history")
    conn_mgr = falcon_pachinko.install(
        app,
        backend,
        limits=connection_limits(settings),
        max_connections=settings.max_connections,
        stamp=stamp,
    )
    # On its own the gateway decides presence; in a cluster the rooms service does.
    presence = PresenceBatcher(
        presence_announcer(conn_mgr.broadcast_to_room), window_s=settings.presence_batch_s
    )
    conn_mgr.on_presence = presence
    metrics.watch(conn_mgr)
    ws_app = cast(PachinkoApp, app)
    ws_app.add_websocket_route(
        CHAT_ROUTE,
        ChatRoomResource,
        metrics,
        settings.typing_ttl_s,
        wall_clock=wall_clock,
        max_connections_per_user=settings.max_connections_per_user,
        durability=durability(settings),
    )
    readiness = _Readiness(ready)
    add_ops_routes(app, readiness, registry)
    app.add_route("/", _IndexPage())
    app.add_route(ROOMS_ROUTE, RoomsResource(conn_mgr, settings.origin_policy))
    controller = WorkerController()

    announce = single_process and settings.announce_interval_s > 0
    # Only the single-process mode announces here; with NATS, the announcer does.
    worker = announcement_worker if announce else None

    @ws_app.lifespan
    async def lifespan(app_instance: Any) -> AsyncIterator[None]:
        if worker is not None:
            await controller.start(
                worker,
                conn_mgr=conn_mgr,
                interval_s=settings.announce_interval_s,
                text=settings.announce_text,
                room_prefix=settings.announce_room_prefix,
            )
        readiness.started = True
        yield
        readiness.started = False
        await controller.stop()
        await presence.close()

    return app
