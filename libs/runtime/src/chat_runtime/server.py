"""uvicorn's server for a service that owns its process: the gateway's and the ops endpoints'.

uvicorn's own :class:`uvicorn.Server` assumes the process is its own. Three of its
habits do not suit a chat service, and :class:`Server` changes exactly those:

Signals
    ``serve()`` installs SIGINT/SIGTERM handlers and, after its graceful shutdown,
    raises the signal again, which ends the process before the caller can drain its
    NATS connection. :class:`Server` installs no handler unless ``handle_signals``
    is set; then SIGINT and SIGTERM run the ``on_exit`` callbacks (the gateway
    fails readiness with them, before any connection closes) and start uvicorn's
    graceful shutdown, and the signal is *not* raised again: :meth:`run_until_exit`
    returns, and the caller drains NATS and picks the exit code. A second SIGINT
    still forces the exit, as in uvicorn. With ``drain``, a signal runs the
    ``on_exit`` callbacks, then awaits ``drain()`` (the gateway closes its clients
    over a window), and only then starts uvicorn's graceful shutdown; a second
    signal during the drain ends the drain and starts it at once (a third SIGINT
    forces the exit).

Startup
    uvicorn raises ``SystemExit`` when it cannot bind or when the app's lifespan
    startup fails. :meth:`run_until_exit` returns ``False`` instead;
    :attr:`Server.startup_done` is set once startup succeeded or failed, and
    ``on_started`` is called with the bound port once it succeeded.

The port
    :attr:`Server.port` is the port the server bound (with ``port=0``, a free one).

The test kit's server (``falcon_pachinko.testing``) is uvicorn's too, but lives in
the library, which cannot depend on this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from types import FrameType
from typing import Any, Final

import structlog
import uvicorn

__all__ = ["Server"]

log = structlog.get_logger(__name__)

_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class Server(uvicorn.Server):
    """uvicorn's server, with the signal and startup behaviour a service needs.

    Args:
        config: uvicorn's configuration.
        handle_signals: Install SIGINT/SIGTERM handlers that begin a graceful
            shutdown (and do not re-raise the signal). Off by default: a server
            inside a service that handles signals itself must not take them over.
        on_exit: Called in order, once, when shutdown begins (a signal, or
            :meth:`request_exit`), before uvicorn stops accepting connections.
            More may be appended to :attr:`on_exit` until then.
        on_started: Called with the bound port once the server listens.
        drain: Awaited after the ``on_exit`` callbacks of a signal, before
            uvicorn's shutdown starts.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        handle_signals: bool = False,
        on_exit: Iterable[Callable[[], None]] = (),
        on_started: Callable[[int], None] | None = None,
        drain: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(config)
        #: Set once startup finished, whether or not it succeeded (see ``started``).
        self.startup_done: Final = asyncio.Event()
        self.on_exit: list[Callable[[], None]] = list(on_exit)
        self._handle_signals = handle_signals
        self._on_started = on_started
        self._exiting = False
        self._drain = drain
        self._drain_started = False
        self._draining: asyncio.Future[None] | None = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on.

        Raises:
            RuntimeError: It is not listening.
        """
        for listener in self.servers:
            for sock in listener.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("the server is not listening")

    async def run_until_exit(self) -> bool:
        """Serve until shutdown.

        Returns:
            ``False`` if the server never started (the port is taken, the lifespan
            startup failed), ``True`` after a shutdown that followed a start.
        """
        try:
            await self.serve()
        except SystemExit:
            return False
        finally:
            self.startup_done.set()  # also when serve() failed before its startup
        return self.started

    def request_exit(self) -> None:
        """Begin a graceful shutdown: the ``on_exit`` callbacks, then uvicorn's."""
        self._begin_exit()
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Called for SIGINT/SIGTERM (only with handle_signals).
        log.info("service.stopping", reason="signal", signal=sig)
        self._begin_exit()
        if self._drain is not None and not self._drain_started:
            # From the signal handler: the drain starts on the loop's next turn.
            self._drain_started = True
            asyncio.get_event_loop().call_soon_threadsafe(self._start_drain, sig, frame)
            return
        if self._draining is not None:  # a second signal: no more waiting
            self._draining.cancel()
        super().handle_exit(sig, frame)

    def _start_drain(self, sig: int, frame: FrameType | None) -> None:
        assert self._drain is not None
        drain = self._drain

        async def drain_then_exit() -> None:
            try:
                await drain()
            except Exception:
                log.exception("service.drain_failed")
            finally:
                # A second signal ended the drain and began the shutdown itself:
                # passing this one on too would look like a third (a forced exit).
                if not self.should_exit:
                    uvicorn.Server.handle_exit(self, sig, frame)

        self._draining = asyncio.ensure_future(drain_then_exit())

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Replaces uvicorn's, which would raise the captured signal again on the way out.
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: Any = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_done.set()
        if self.started and self._on_started is not None:
            self._on_started(self.port)

    def _begin_exit(self) -> None:
        if self._exiting:
            return
        self._exiting = True
        for callback in self.on_exit:
            callback()
