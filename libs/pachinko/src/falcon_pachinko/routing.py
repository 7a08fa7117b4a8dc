"""The Falcon responder behind ``app.add_websocket_route``: it runs one connection.

Lifecycle of a connection::

    resource = ResourceClass(*args, **kwargs)
    on_connect(req, ws, **params) ──False/raises──▶ HTTP 403, nothing sent
        │ True
    accept; frames sent inside on_connect go out first
    receive loop: one frame at a time ──▶ handler | on_invalid_message | on_unhandled
        │ peer closed, server closed, or connection lost
    on_disconnect(ws, close_code)   (exactly once)
    leave every room; flush and close within close_timeout_s
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import falcon.errors
import structlog

from .connection import Connection
from .dispatch import Dispatch, Invalid, decide
from .errors import ConnectionClosed

if TYPE_CHECKING:
    import falcon.asgi

    from .manager import WebSocketConnectionManager
    from .resource import WebSocketResource

__all__ = ["WebSocketRoute"]

log = structlog.get_logger(__name__)

# RFC 6455 7.1.5: "no status code was actually present".
_NO_STATUS = 1005


class WebSocketRoute:
    """Falcon resource that builds a ``WebSocketResource`` per connection and runs it."""

    def __init__(
        self,
        manager: WebSocketConnectionManager,
        resource_cls: type[WebSocketResource],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._manager = manager
        self._resource_cls = resource_cls
        self._args = args
        self._kwargs = kwargs

    async def on_websocket(
        self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket, **params: Any
    ) -> None:
        conn = Connection(ws, self._manager.limits)
        resource = self._resource_cls(*self._args, **self._kwargs)
        resource._pachinko_conn = conn
        resource._pachinko_manager = self._manager
        self._manager.register(conn)
        bound = structlog.contextvars.bound_contextvars(
            connection_id=conn.id, resource=self._resource_cls.__qualname__
        )
        try:
            with bound:
                if await self._connect(resource, req, conn, params):
                    await self._serve(resource, conn)
        finally:
            await self._manager.unregister(conn)
            await conn.finish()

    async def _connect(
        self,
        resource: WebSocketResource,
        req: falcon.asgi.Request,
        conn: Connection,
        params: dict[str, Any],
    ) -> bool:
        try:
            accepted = await resource.on_connect(req, conn, **params)
        except Exception:
            log.exception("pachinko.on_connect_failed")
            accepted = False
        if accepted is None:
            log.warning("pachinko.on_connect_returned_none", hint="return True to accept")
        if not accepted or conn.closed:
            await conn.close(1008)
            return False
        return True

    async def _serve(self, resource: WebSocketResource, conn: Connection) -> None:
        try:
            await conn.accept()
        except (falcon.errors.WebSocketDisconnected, ConnectionError):
            # The client went away during on_connect; the resource saw it accepted.
            conn.mark_closed(1006)
        else:
            await self._receive_loop(resource, conn)
        await _guarded("on_disconnect", resource.on_disconnect(conn, conn.close_code or _NO_STATUS))

    async def _receive_loop(self, resource: WebSocketResource, conn: Connection) -> None:
        while not conn.closed:
            try:
                frame = await _receive_frame(conn.raw)
            except falcon.errors.WebSocketDisconnected as exc:
                conn.mark_closed(exc.code)
                return
            self._manager.stats.frames_received += 1
            try:
                await _dispatch(resource, conn, frame)
            except ConnectionClosed:
                return


async def _receive_frame(ws: falcon.asgi.WebSocket) -> str | bytes:
    # NOTE: Falcon's public API receives either text (receive_text) or binary
    # (receive_data) and consumes a frame of the other kind as an error. A chat
    # must hand any frame to on_unhandled, so read the ASGI event itself through
    # Falcon's buffered receiver, which keeps Falcon's close bookkeeping intact.
    event = await ws._receive()
    text = event.get("text")
    if text is not None:
        return str(text)
    return bytes(event.get("bytes") or b"")


async def _dispatch(resource: WebSocketResource, conn: Connection, frame: str | bytes) -> None:
    decision = decide(resource._pachinko_handlers, frame)
    if isinstance(decision, Dispatch):
        handler = getattr(resource, decision.attr)
        try:
            await handler(conn, decision.payload)
        except ConnectionClosed:
            raise
        except Exception as exc:
            log.exception("pachinko.handler_failed", message_type=decision.message_type)
            await _guarded(
                "on_handler_error", resource.on_handler_error(conn, decision.message_type, exc)
            )
    elif isinstance(decision, Invalid):
        await _guarded(
            "on_invalid_message",
            resource.on_invalid_message(conn, decision.message_type, decision.error, frame),
        )
    else:
        await _guarded("on_unhandled", resource.on_unhandled(conn, frame))


async def _guarded(hook: str, call: Any) -> None:
    try:
        await call
    except ConnectionClosed:
        pass
    except Exception:
        log.exception("pachinko.hook_failed", hook=hook)
