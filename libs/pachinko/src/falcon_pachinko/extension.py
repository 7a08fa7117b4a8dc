"""``install(app)``: attach the extension to a ``falcon.asgi.App``.

``falcon.asgi.App`` declares ``__slots__``, so nothing can be added to an instance.
``install`` therefore gives the instance a subclass of its own class that adds
only methods and properties (``__slots__ = ()`` keeps the memory layout, which is
what allows the class swap), closing over this app's extension state. The
instance remains an instance of its original class.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol, TypeVar

import falcon.asgi
import structlog

from .backends.base import Backend
from .connection import ConnectionLimits
from .history import Stamp, stamp_top_level
from .manager import WebSocketConnectionManager
from .presence import PresenceHandler
from .resource import WebSocketResource
from .routing import WebSocketRoute

__all__ = ["LifespanFn", "PachinkoApp", "install"]

log = structlog.get_logger(__name__)

LifespanFn = Callable[[Any], AsyncIterator[None]]
L = TypeVar("L", bound=LifespanFn)


class PachinkoApp(Protocol):
    """What :func:`install` adds to a ``falcon.asgi.App``, for type checkers.

    ``install`` changes the app at run time, which static checkers cannot follow;
    typed code can view the app through this protocol::

        falcon_pachinko.install(app)
        ws_app = typing.cast(falcon_pachinko.PachinkoApp, app)
        ws_app.add_websocket_route("/ws/chat/{room_name}", ChatRoomResource)
    """

    @property
    def ws_connection_manager(self) -> WebSocketConnectionManager:
        """The app's connection manager."""

    def add_websocket_route(
        self,
        uri_template: str,
        resource_cls: type[WebSocketResource],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Route ``uri_template`` to a new ``resource_cls(*args, **kwargs)`` per connection."""

    def lifespan(self, fn: L) -> L:
        """Register an async generator function run around the app's lifetime."""


class _Extension:
    """Per-app state, registered as Falcon middleware to receive lifespan events."""

    def __init__(self, app: falcon.asgi.App[Any, Any], manager: WebSocketConnectionManager) -> None:
        self.app = app
        self.manager = manager
        self.lifespans: list[LifespanFn] = []
        self._running: list[AsyncIterator[None]] = []

    def add_lifespan(self, fn: L) -> L:
        if not _is_async_generator_function(fn):
            raise TypeError(
                "@app.lifespan expects an async generator function: 'async def f(app): ... yield'"
            )
        self.lifespans.append(fn)
        return fn

    async def process_startup(self, scope: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        await self.manager.start()
        try:
            for fn in self.lifespans:
                gen = fn(self.app)
                try:
                    await gen.__anext__()
                except StopAsyncIteration:
                    raise RuntimeError(
                        f"lifespan {fn.__qualname__} returned without yielding"
                    ) from None
                self._running.append(gen)
        except BaseException:
            # Startup failed: undo what did start, then let Falcon report the failure.
            await self._unwind()
            raise

    async def process_shutdown(self, scope: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        await self._unwind()

    async def _unwind(self) -> None:
        first_error: BaseException | None = None
        while self._running:
            gen = self._running.pop()
            try:
                await gen.__anext__()
            except StopAsyncIteration:
                continue
            except Exception as exc:
                log.exception("pachinko.lifespan_shutdown_failed")
                first_error = first_error or exc
                continue
            log.error("pachinko.lifespan_yielded_twice", lifespan=repr(gen))
            aclose = getattr(gen, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        await self.manager.stop()
        if first_error is not None:
            raise first_error


def _is_async_generator_function(obj: object) -> bool:
    # A plain bool (not inspect's TypeGuard) keeps the decorated type intact.
    return inspect.isasyncgenfunction(obj)


def install(
    app: falcon.asgi.App[Any, Any],
    backend: Backend | None = None,
    *,
    limits: ConnectionLimits | None = None,
    max_connections: int | None = None,
    on_presence: PresenceHandler | None = None,
    stamp: Stamp = stamp_top_level,
) -> WebSocketConnectionManager:
    """Add WebSocket resources, rooms and lifespan hooks to a Falcon ASGI app.

    Afterwards the app has:

    * ``app.ws_connection_manager``: the :class:`WebSocketConnectionManager`;
    * ``app.add_websocket_route(template, ResourceClass, *args, **kwargs)``: one
      ``ResourceClass(*args, **kwargs)`` per connection; URI template fields go to
      ``on_connect`` as keyword arguments;
    * ``@app.lifespan``: decorates ``async def fn(app): ...; yield; ...``. Code
      before ``yield`` runs at ASGI startup (an exception there fails startup),
      code after it at shutdown, in reverse order of registration.

    Args:
        app: The app. It is modified in place.
        backend: Where room traffic goes; ``None`` for the in-process backend.
        limits: Per-connection limits (outbound queue, message budget, rooms,
            ``on_connect`` time) for every connection.
        max_connections: Connections this process serves at once; beyond them a
            handshake is refused with HTTP 503 and ``Retry-After`` before any
            resource is built. ``None`` or 0: no limit (uvicorn's
            ``limit_concurrency`` does not bound WebSocket connections).
        on_presence: Called with each first-in/last-out presence change, where
            this process decides presence (see :class:`WebSocketConnectionManager`).
        stamp: How a durable message's position is added to its JSON text (see
            :mod:`falcon_pachinko.history`); top-level ``id``/``seq``/``ts`` by default.

    Returns:
        The connection manager (also ``app.ws_connection_manager``).

    Raises:
        TypeError: ``app`` is not a ``falcon.asgi.App``.
        RuntimeError: The extension is already installed on ``app``.
    """
    if not isinstance(app, falcon.asgi.App):
        raise TypeError("install() needs a falcon.asgi.App instance")
    if hasattr(app, "ws_connection_manager"):
        raise RuntimeError("falcon_pachinko is already installed on this app")
    manager = WebSocketConnectionManager(
        backend,
        limits=limits,
        max_connections=max_connections,
        on_presence=on_presence,
        stamp=stamp,
    )
    ext = _Extension(app, manager)
    app.add_middleware(ext)
    app.__class__ = _extended_class(type(app), ext)
    return manager


def _extended_class(
    base: type[falcon.asgi.App[Any, Any]], ext: _Extension
) -> type[falcon.asgi.App[Any, Any]]:
    def add_websocket_route(
        self: falcon.asgi.App[Any, Any],
        uri_template: str,
        resource_cls: type[WebSocketResource],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Route ``uri_template`` to a new ``resource_cls(*args, **kwargs)`` per connection."""
        if not (isinstance(resource_cls, type) and issubclass(resource_cls, WebSocketResource)):
            raise TypeError("add_websocket_route needs a WebSocketResource subclass")
        self.add_route(uri_template, WebSocketRoute(ext.manager, resource_cls, args, kwargs))

    namespace = {
        "__slots__": (),
        "__module__": base.__module__,
        "ws_connection_manager": property(lambda self: ext.manager),
        "add_websocket_route": add_websocket_route,
        "lifespan": lambda self, fn: ext.add_lifespan(fn),
    }
    return type(base.__name__, (base,), namespace)
