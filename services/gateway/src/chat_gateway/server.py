"""Serving the gateway's app: uvicorn's options, the banner, and how serving ends.

The gateway handles SIGINT and SIGTERM itself (:class:`chat_runtime.server.Server`
with ``handle_signals``): the ``on_exit`` callbacks run first (readiness fails, so
the load balancer stops sending clients), then uvicorn shuts down gracefully
(clients get ``CloseCode.SERVICE_RESTART`` and may reconnect elsewhere), and only
then does the caller drain NATS. A NATS connection closed for good takes the same
path and exits 1.

With NATS, the gateway listens before NATS is reachable: uvicorn serves a
:class:`Gate`, which answers health, readiness (503) and metrics, refuses
WebSocket handshakes with HTTP 503, and opens the chat once NATS answers
(``service.listening`` is logged when the port is bound, ``service.ready`` once
the chat is open).
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final, cast

import structlog
import uvicorn

from chat_runtime.lifecycle import cancel_and_wait
from chat_runtime.natsconn import NatsConnection
from chat_runtime.server import Server
from falcon_pachinko import PachinkoApp
from falcon_pachinko.handshake import deny
from falcon_pachinko.uvicorn_ws import WebSocketProtocol

from .httpguard import header_deadline_protocol
from .settings import Settings

__all__ = [
    "Draining",
    "Gate",
    "banner",
    "drain_clients",
    "exit_callbacks",
    "serve",
    "uvicorn_options",
]

log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[..., Any]  # an ASGI 3 app (Falcon's, say)

_NOT_READY_BODY: Final = b"The chat is not ready yet; try again shortly.\n"


class Draining:
    """Set once shutdown begins, so that readiness fails before connections close."""

    def __init__(self) -> None:
        self.now = False

    def set(self) -> None:
        self.now = True


def exit_callbacks(chat: Callable[[], Any], draining: Draining) -> list[Callable[[], None]]:
    """What runs when shutdown begins: readiness fails first; then presence is held,
    since clients are about to get 1012 and reconnect elsewhere (no one is announced
    as left or joined meanwhile). ``chat()`` is the chat app, or ``None`` if the
    gateway stops before it opened."""

    def hold_presence() -> None:
        if (app := chat()) is not None:
            cast(PachinkoApp, app).ws_connection_manager.begin_shutdown()

    return [draining.set, hold_presence]


def drain_clients(chat: Callable[[], Any], window_s: float) -> Callable[[], Awaitable[None]] | None:
    """After the exit callbacks: close the chat's clients with 1012 spread over
    ``window_s`` (jittered), so they do not all reconnect at once; ``None`` with
    no window (uvicorn's shutdown closes them together)."""
    if window_s <= 0:
        return None

    async def drain() -> None:
        if (app := chat()) is not None:
            await cast(PachinkoApp, app).ws_connection_manager.drain(window_s)

    return drain


class _Lifespan:
    """Drives an ASGI app's lifespan protocol from inside another app."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._to_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        """Run the app's lifespan startup.

        Raises:
            RuntimeError: It failed (the message is the app's).
        """
        scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = {}
        self._task = asyncio.create_task(self._run(scope), name="chat-lifespan")
        await self._exchange("lifespan.startup")

    async def _run(self, scope: Scope) -> None:
        await self._app(scope, self._to_app.get, self._from_app.put)

    async def shutdown(self) -> None:
        """Run the app's lifespan shutdown.

        Raises:
            RuntimeError: It failed.
        """
        await self._exchange("lifespan.shutdown")
        assert self._task is not None
        await self._task

    async def _exchange(self, kind: str) -> None:
        assert self._task is not None
        await self._to_app.put({"type": kind})
        reply = asyncio.ensure_future(self._from_app.get())
        try:
            await asyncio.wait([reply, self._task], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            reply.cancel()
            self._task.cancel()
            raise
        if not reply.done():
            reply.cancel()
            self._task.result()  # the app's own exception, if it raised one
            raise RuntimeError(f"the app ended its lifespan during {kind}")
        message = reply.result()
        if message["type"] != f"{kind}.complete":
            raise RuntimeError(f"{kind} failed: {message.get('message', '')}")


class Gate:
    """The ASGI app uvicorn serves with NATS: the chat once it is open, health until then.

    The gateway's own lifespan startup completes at once, so uvicorn listens before
    NATS is reachable; ``waiting`` (the ops routes: ``/healthz`` 200, ``/readyz``
    503, ``/metrics``) answers HTTP meanwhile. The lifespan startup also starts
    ``opener`` (connect to NATS, build the chat app) in the background; once it
    returns, the chat app's own lifespan startup runs and everything goes to the
    chat app. At shutdown, an opener still running is cancelled, and an open chat
    app's lifespan shutdown runs.

    WebSocket handshakes get HTTP 503 (``Retry-After: 1``) while the chat is not
    open or ``ready()`` is false (NATS down, draining), never a hang.

    Attributes:
        app: The chat app, once open.
        settled: Set once the opener has finished, successfully or not.
        failure: What ended the opener, if it failed (the gateway then exits 1).
    """

    def __init__(
        self,
        waiting: ASGIApp,
        ready: Callable[[], bool],
        opener: Callable[[], Awaitable[Any]],
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self._waiting = waiting
        self._ready = ready
        self._opener = opener
        self._on_refused = on_refused
        self.app: Any | None = None
        self.settled: Final = asyncio.Event()
        self.failure: BaseException | None = None
        self._opening: asyncio.Task[None] | None = None
        self._lifespan: _Lifespan | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        app = self.app
        if kind == "websocket" and (app is None or not self._ready()):
            self._on_refused()
            await _refuse_websocket(scope, receive, send)
            return
        await (app if app is not None else self._waiting)(scope, receive, send)

    async def _open(self) -> None:
        try:
            app = await self._opener()
            lifespan = _Lifespan(app)
            await lifespan.startup()
        except Exception as exc:
            self.failure = exc
        else:
            self._lifespan = lifespan
            self.app = app
        self.settled.set()  # not when cancelled: the gateway is stopping anyway

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                self._opening = asyncio.create_task(self._open(), name="chat-open")
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                try:
                    await self._close()
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _close(self) -> None:
        if self._opening is not None and not self._opening.done():
            await cancel_and_wait(self._opening)
        if self._lifespan is not None:
            lifespan, self._lifespan = self._lifespan, None
            await lifespan.shutdown()


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    if not await deny(scope, send, 503, retry_after_s=1, body=_NOT_READY_BODY):
        await send({"type": "websocket.close", "code": 1013})  # answered with 403


async def serve(
    settings: Settings,
    app: Any,
    conn: NatsConnection | None,
    *,
    on_exit: Iterable[Callable[[], None]] = (),
    on_header_timeout: Callable[[], None] | None = None,
    drain: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Serve ``app`` until a signal or until ``conn`` is closed for good.

    Args:
        settings: The gateway's settings (address, WebSocket limits).
        app: The ASGI app; a :class:`Gate` with NATS, whose opening is watched.
        conn: The NATS connection to watch; ``None`` for the single-process mode.
        on_exit: Run when shutdown begins, before uvicorn's graceful shutdown.
        drain: Awaited after ``on_exit`` on a signal, before uvicorn's shutdown.
        on_header_timeout: Called for each connection dropped for slow headers.

    Returns:
        The exit code: 0 after a signal, 1 when NATS was lost for good, could not
        be reached within ``CHAT_NATS_CONNECT_TIMEOUT_S``, or the server could not
        start (the port is taken, the chat app's startup failed).
    """
    gate = app if isinstance(app, Gate) else None
    server = Server(
        uvicorn.Config(app, **uvicorn_options(settings, on_header_timeout)),
        handle_signals=True,
        on_exit=on_exit,
        on_started=lambda port: _announce(settings, port, ready=gate is None),
        drain=drain,
    )
    serving = asyncio.create_task(server.run_until_exit(), name="uvicorn")
    waiters: set[asyncio.Future[Any]] = {serving}
    lost = asyncio.ensure_future(conn.closed.wait()) if conn is not None else None
    opened = asyncio.ensure_future(gate.settled.wait()) if gate is not None else None
    waiters |= {w for w in (lost, opened) if w is not None}
    failed = False
    await server.startup_done.wait()  # also set when startup failed
    while server.started and not serving.done():
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if serving in done:
            break
        if opened is not None and opened in done:
            waiters.discard(opened)
            assert gate is not None
            if gate.failure is None:
                log.info("service.ready", service="gateway", port=server.port)
                continue
            log.error("service.stopping", reason="chat could not open", error=str(gate.failure))
            print(f"chat-gateway: {gate.failure}", file=sys.stderr)
        else:
            log.error("service.stopping", reason="nats connection closed")
        failed = True
        server.request_exit()
        break
    for waiter in waiters - {serving}:
        waiter.cancel()
    started = await serving
    if not started:
        print(f"chat-gateway: cannot serve on {settings.host}:{settings.port}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _announce(settings: Settings, port: int, *, ready: bool) -> None:
    print(banner(settings, port), flush=True)
    log.info("service.listening", service="gateway", port=port)
    if ready:
        log.info("service.ready", service="gateway", port=port)


def uvicorn_options(
    settings: Settings, on_header_timeout: Callable[[], None] | None = None
) -> dict[str, Any]:
    """uvicorn's options, every WebSocket limit spelled out (tests reuse them).

    Args:
        settings: The gateway's settings.
        on_header_timeout: Called for each connection dropped because its request
            headers took longer than ``CHAT_HANDSHAKE_TIMEOUT_S``.
    """
    return {
        "host": settings.host,
        "port": settings.port,
        # httptools, with a deadline for request headers (slowloris).
        "http": header_deadline_protocol(
            settings.handshake_timeout_s, on_header_timeout or _log_header_timeout
        ),
        "ws": WebSocketProtocol if settings.ws_protocol == "pachinko" else settings.ws_protocol,
        # Never uvicorn's 16 MiB default: larger frames close with MESSAGE_TOO_BIG.
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


def _log_header_timeout() -> None:
    log.warning("http.header_timeout")


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
