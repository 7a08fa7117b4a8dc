"""The Falcon responder behind ``app.add_websocket_route``: it runs one connection.

Lifecycle of a connection::

    manager.full (max_connections held)? ──▶ HTTP 503 + Retry-After; no resource,
        │ no                                  nothing registered
    resource = ResourceClass(*args, **kwargs); manager.register(conn)
    on_connect(req, ws, **params) ──False/raises──▶ HTTP 403, nothing sent,
        │ True                   raises HTTPError ──▶ its status        no on_disconnect
        │                       raises BackendError ──▶ HTTP 503
        │                  runs past connect_timeout_s ──▶ cancelled, HTTP 503
        │ closed meanwhile (overflow, abort)? ──▶ no accept (HTTP 403) ─┐
    accept; frames sent inside on_connect go out first                  │
    catch-up: history of the durable rooms joined in on_connect         │
    receive loop: one frame at a time                                   │
        session.receive(frame) ──▶ handler | on_invalid_message         │
                                   | on_unhandled | on_rate_limited     │
                                   | dropped                            │
        │ peer closed, server closed, connection lost, flooding (1008), │
        │ deadline (close_after), or an unexpected error (logged, 1011) │
    on_disconnect(ws, close_code)   exactly once ◀──────────────────────┘
    manager.unregister: leave every room; flush and close within close_timeout_s

Once ``on_connect`` has returned ``True``, ``on_disconnect`` runs however the
connection ends, so every join it made is matched by a leave; ``unregister``
runs for every connection, rejected or not — a timed-out ``on_connect`` too, so
the rooms it joined before it was cancelled are left.

The connection limit is the library's to keep: uvicorn's ``limit_concurrency``
(answering 503 beyond N concurrent requests) does not apply to WebSocket
upgrades once they are being served, so a server option cannot bound them.
A handshake refused because the process is full is checked before the resource
is built and before anything is registered, so it never counts itself.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import falcon.errors
import structlog

from .close_codes import CloseCode, ReceivedCloseCode
from .connection import Connection
from .errors import BackendError, ConnectionClosed
from .handshake import refuse
from .session import Dispatch, Drop, Inbound, Invalid, RateLimited, Unhandled
from .wire import EXTENSION

if TYPE_CHECKING:
    import falcon.asgi

    from .manager import WebSocketConnectionManager
    from .resource import WebSocketResource

__all__ = ["WebSocketRoute"]

log = structlog.get_logger(__name__)

# RFC 6455 7.1.5: "no status code was actually present".
_NO_STATUS = ReceivedCloseCode.NO_STATUS

#: Suggested to a client refused because the backend is away, or on_connect hung.
_RETRY_AFTER_S = 1
#: Suggested to a client refused because the process is full: long enough for
#: connections to end, or for a load balancer to send the retry elsewhere.
_FULL_RETRY_AFTER_S = 5


#: The buffer of every Falcon receiver the library reads around (see ``_read_directly``).
_NO_MESSAGES: deque[Any] = deque(maxlen=0)


class _ConnectTimedOut(Exception):
    """``on_connect`` ran past ``connect_timeout_s`` and was cancelled."""


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
        if self._manager.draining:
            self._manager.stats.refused_draining += 1
            await refuse(req, ws, 503, _FULL_RETRY_AFTER_S)
            return
        if self._manager.full:
            # No await between this check and register() below.
            self._manager.stats.refused_full += 1
            log.info("pachinko.refused_full", connections=self._manager.connection_count)
            await refuse(req, ws, 503, _FULL_RETRY_AFTER_S)
            return
        handlers = self._resource_cls._pachinko_handlers
        _read_directly(ws)
        conn = Connection(
            ws,
            self._manager.limits,
            handlers,
            connection_id=self._manager.new_connection_id(),
            wire=req.scope.get("extensions", {}).get(EXTENSION),
        )
        resource = self._resource_cls(*self._args, **self._kwargs)
        resource._pachinko_conn = conn
        resource._pachinko_manager = self._manager
        self._manager.register(conn)
        try:
            # Bound and reset by hand, not with ``bound_contextvars``: its context
            # manager and generator would stay suspended for the connection's life.
            tokens = structlog.contextvars.bind_contextvars(
                connection_id=conn.id, resource=self._resource_cls.__qualname__
            )
            try:
                if await self._connect(resource, req, conn, params):
                    try:
                        await self._serve(resource, conn)
                    finally:
                        code = conn.close_code or _NO_STATUS
                        await _guarded("on_disconnect", resource.on_disconnect(conn, code))
            finally:
                structlog.contextvars.reset_contextvars(**tokens)
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
            accepted = await self._on_connect(resource, req, conn, params)
        except _ConnectTimedOut:
            log.warning(
                "pachinko.on_connect_timeout", timeout_s=self._manager.limits.connect_timeout_s
            )
            self._manager.stats.connect_timeouts += 1
            await _refuse(req, conn, 503, _RETRY_AFTER_S)
            return False
        except falcon.errors.HTTPError as exc:
            await _refuse(req, conn, exc.status_code, _retry_after(exc))
            return False
        except BackendError:
            # The infrastructure is away; the client is welcome to try again.
            log.warning("pachinko.on_connect_unavailable")
            await _refuse(req, conn, 503, _RETRY_AFTER_S)
            return False
        except Exception:
            log.exception("pachinko.on_connect_failed")
            accepted = False
        if accepted is None:
            log.warning("pachinko.on_connect_returned_none", hint="return True to accept")
        if not accepted:
            await conn.close(CloseCode.POLICY_VIOLATION)
            return False
        return True

    async def _on_connect(
        self,
        resource: WebSocketResource,
        req: falcon.asgi.Request,
        conn: Connection,
        params: dict[str, Any],
    ) -> bool:
        timeout = asyncio.timeout(self._manager.limits.connect_timeout_s)
        try:
            async with timeout:
                return await resource.on_connect(req, conn, **params)
        except TimeoutError:
            if timeout.expired():
                raise _ConnectTimedOut from None
            raise  # on_connect's own TimeoutError: a failure like any other

    async def _serve(self, resource: WebSocketResource, conn: Connection) -> None:
        try:
            if conn.closed:
                return  # closed during on_connect, after it had joined rooms
            try:
                await conn.accept()
            except (falcon.errors.WebSocketDisconnected, ConnectionError):
                # The client went away during on_connect; the resource saw it accepted.
                conn.mark_closed(ReceivedCloseCode.ABNORMAL_CLOSURE)
                return
            # Durable rooms joined in on_connect: their history follows the
            # frames on_connect sent, then live traffic.
            await self._manager.catch_up(conn)
            await self._receive_loop(resource, conn)
        except Exception:
            # A bug in the library or below it (a decoder, Falcon, the server):
            # log it, close without detail, and let on_disconnect run.
            log.exception("pachinko.connection_failed")
            conn.abort(CloseCode.INTERNAL_ERROR, "internal error")

    async def _receive_loop(self, resource: WebSocketResource, conn: Connection) -> None:
        raw = conn.raw
        while not conn.closed:
            # NOTE: Falcon's public API receives either text (receive_text) or
            # binary (receive_data) and consumes a frame of the other kind as an
            # error. A chat must hand any frame to on_unhandled, so read the ASGI
            # event itself through Falcon's ``_receive``, which keeps Falcon's close
            # bookkeeping intact. Read here, not in a helper: one coroutine frame
            # less suspended per idle connection.
            bound = conn.reading()
            try:
                async with bound:
                    event = await raw._receive()
            except falcon.errors.WebSocketDisconnected as exc:
                conn.mark_closed(exc.code)
                return
            except TimeoutError:
                if not bound.expired():
                    raise
                # The close began (Connection.reading): nothing more is read.
                conn.mark_closed(conn.close_code or CloseCode.NORMAL)
                return
            text = event.get("text")
            frame = str(text) if text is not None else bytes(event.get("bytes") or b"")
            self._manager.stats.frames_received += 1
            decision = conn.receive(frame)
            if isinstance(decision, RateLimited):
                self._count_refusal(decision)
            try:
                await _perform(resource, conn, decision, frame)
            except ConnectionClosed:
                return

    def _count_refusal(self, decision: RateLimited) -> None:
        stats = self._manager.stats
        stats.frames_rate_limited += 1
        if decision.closing:
            stats.rate_limit_closes += 1
            log.warning("pachinko.rate_limit_close")


def _read_directly(ws: falcon.asgi.WebSocket) -> None:
    # NOTE: Falcon buffers received events in a task of its own per connection
    # (``_BufferedReceiver``: a pump task and an ``asyncio.wait`` per receive),
    # so that an application that only sends learns of a disconnect. A library
    # connection always has a receive pending once accepted (the receive loop),
    # so the buffer only costs memory: about 3 KB per idle connection. (Falcon's
    # close also ends the buffered reads; ``Connection.reading`` keeps that.) Reading
    # the server's ``receive`` directly is what Falcon does with
    # ``max_receive_queue=0``; done here per connection, so the application's
    # other WebSocket routes keep their option. Called before the accept, which
    # would start the pump.
    receiver = getattr(ws, "_buffered_receiver", None)
    if receiver is not None and getattr(receiver, "_pump_task", True) is None:
        ws._asgi_receive = receiver._asgi_receive
        receiver._max_queue = 0  # the accept starts no pump
        # Its buffer is never filled nor read now: one shared empty deque
        # instead of one per connection.
        receiver._messages = _NO_MESSAGES


def _retry_after(exc: falcon.errors.HTTPError) -> int | None:
    headers = exc.headers
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for name, value in pairs:
        if name.lower() == "retry-after" and value.isdigit():
            return int(value)
    return None


async def _refuse(
    req: falcon.asgi.Request, conn: Connection, status: int, retry_after_s: int | None
) -> None:
    if status == 403:
        await conn.close(CloseCode.POLICY_VIOLATION)
        return
    conn.mark_closed(CloseCode.POLICY_VIOLATION)  # nothing queued may go out
    await refuse(req, conn.raw, status, retry_after_s)


async def _perform(
    resource: WebSocketResource, conn: Connection, decision: Inbound, frame: str | bytes
) -> None:
    match decision:
        case Dispatch(message_type=message_type, attr=attr, payload=payload):
            await _call_handler(resource, conn, message_type, getattr(resource, attr), payload)
        case Invalid(message_type=message_type, error=error):
            call = resource.on_invalid_message(conn, message_type, error, frame)
            await _guarded("on_invalid_message", call)
        case Unhandled():
            await _guarded("on_unhandled", resource.on_unhandled(conn, frame))
        case RateLimited():
            await _guarded("on_rate_limited", resource.on_rate_limited(conn, frame))
        case Drop():
            pass


async def _call_handler(
    resource: WebSocketResource,
    conn: Connection,
    message_type: str,
    handler: Callable[[Connection, Any], Awaitable[None]],
    payload: Any,
) -> None:
    try:
        await handler(conn, payload)
    except ConnectionClosed:
        raise
    except Exception as exc:
        log.exception("pachinko.handler_failed", message_type=message_type)
        await _guarded("on_handler_error", resource.on_handler_error(conn, message_type, exc))


async def _guarded(hook: str, call: Any) -> None:
    try:
        await call
    except ConnectionClosed:
        pass
    except Exception:
        log.exception("pachinko.hook_failed", hook=hook)
