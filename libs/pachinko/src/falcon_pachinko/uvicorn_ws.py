"""The uvicorn WebSocket protocol that lends the library its sockets.

``uvicorn.run(app, ws=WebSocketProtocol)`` (or ``--ws
falcon_pachinko.uvicorn_ws:WebSocketProtocol``) runs uvicorn's
``websockets-sansio`` protocol with one addition: each accepted connection's
ASGI scope carries a :class:`~falcon_pachinko.wire.FrameSink` under
:data:`~falcon_pachinko.wire.EXTENSION`. Room traffic is then written straight
to the transport, framed once per message for every recipient (see
:mod:`falcon_pachinko.wire`). Everything else — the handshake, ``accept``,
denial responses, close, ping/pong, reading — is uvicorn's, unchanged; any other
ASGI server runs the library through plain ASGI.

An idle connection is what a chat server holds most of, so the protocol also
holds less per connection than uvicorn's: its ASGI receive queue and its
"writable" flag are small purpose-built objects (:class:`_Inbox`,
:class:`_Flag`) instead of an :class:`asyncio.Queue` and an
:class:`asyncio.Event` (four and one ``deque`` each), and the handshake's
request is emptied once the connection is accepted.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Final, Generic, TypeVar

import structlog
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from .wire import EXTENSION

log = structlog.get_logger(__name__)

#: Pending bytes of one connection that are handed to the transport at once:
#: asyncio's default high-water mark for a transport's write buffer.
_FLUSH_AT: Final = 64 * 1024

__all__ = ["WebSocketProtocol"]

_T = TypeVar("_T")


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, with a frame sink in the scope.

    Frames written to the sink within one event-loop turn go out together at the
    start of the next one (one system call per connection per turn). Whatever
    uvicorn itself writes on the connection — a close frame above all — is
    preceded by a flush, so nothing overtakes a frame written before it.
    """

    _sink: _Sink | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The same interface as uvicorn's, for what uvicorn calls on them.
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag(set_=True)  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:  # an upgrade: the ASGI task starts after this returns
            self._sink = _Sink(self)
            scope["extensions"][EXTENSION] = self._sink

    # Whether the sink is writable is a flag, recomputed wherever uvicorn changes
    # the connection's state: every delivery asks it.

    async def send(self, message: Any) -> None:
        sink = self._sink
        if sink is not None:
            sink.flush()  # what the library wrote goes first
        try:
            await super().send(message)
        finally:
            self._recheck()
        if self.handshake_complete and hasattr(self, "response"):
            # The handshake is over: its request and response (headers and all)
            # are never read again, and idle connections are many. The
            # request's headers are emptied, not just let go: websockets' parser
            # keeps the request in its suspended frame for the connection's life.
            self.request.headers.clear()
            del self.request, self.response

    def data_received(self, data: bytes) -> None:
        # Reading may make uvicorn write (a close echo, a protocol error's close):
        # what the library wrote before goes first.
        if self._sink is not None:
            self._sink.flush()
        super().data_received(data)
        self._recheck()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._recheck()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._recheck()

    def send_keepalive_ping(self) -> None:
        if self._sink is not None:
            self._sink.flush()
        super().send_keepalive_ping()

    def keepalive_timeout(self) -> None:
        if self._sink is not None:
            self._sink.flush()
        super().keepalive_timeout()
        self._recheck()

    def shutdown(self) -> None:
        if self._sink is not None:
            self._sink.flush()
        super().shutdown()
        self._recheck()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._sink is not None:
            self._sink._pending = None  # nowhere to go
        super().connection_lost(exc)
        self._recheck()

    def _recheck(self) -> None:
        sink = self._sink
        if sink is not None:
            sink.ok = (
                self.handshake_complete
                and self.initial_response is None
                and not self.close_sent
                and not self.disconnected
                and self.writable.is_set()
                and self.conn.state is State.OPEN
                and not self.transport.is_closing()
            )


class _Sink:
    __slots__ = ("_flusher", "_pending", "_pending_bytes", "_protocol", "ok")

    def __init__(self, protocol: WebSocketProtocol) -> None:
        self._protocol = protocol
        self._flusher = _flusher_of(protocol.loop)
        #: Frames written since the last flush, in order (``None``: none).
        self._pending: list[bytes] | None = None
        self._pending_bytes = 0
        #: Accepted, open, and below the high-water mark (kept by the protocol).
        self.ok = False

    def writable(self) -> bool:
        return self.ok

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._pending_bytes = len(data)
            self._flusher.due(self)
        else:
            pending.append(data)
            self._pending_bytes += len(data)
        if self._pending_bytes >= _FLUSH_AT:
            # A turn's worth of frames past the high-water mark goes to the
            # transport now: it pauses writing, and later frames queue (bounded).
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if not pending:
            return
        p = self._protocol
        if p.close_sent or p.disconnected or p.transport.is_closing():
            return  # a close frame went out: nothing may follow it
        p.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    async def drained(self) -> None:
        await self._protocol.writable.wait()


class _Inbox(Generic[_T]):
    """The ASGI receive queue of one connection: what uvicorn's ``asyncio.Queue`` does here.

    uvicorn only calls ``put_nowait``, ``get`` and ``empty``; it holds a message
    or two at most (it pauses reading while one waits). Items and waiters are
    lists, made when first needed, instead of the queue's four ``deque`` objects
    and its ``Event``: an idle connection holds one waiting future.
    """

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[_T] | None = None
        self._waiters: list[asyncio.Future[None]] | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: _T) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        self._wake_one()

    async def get(self) -> _T:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = [waiter]
            else:
                self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                if self._items and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: the item is another's
                raise
            finally:
                if self._waiters is not None and waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._items.pop(0)

    def _wake_one(self) -> None:
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)
                return


class _Flag:
    """Whether the transport takes writes: the ``asyncio.Event`` uvicorn keeps, smaller.

    ``set``, ``clear``, ``is_set`` and ``wait``, as uvicorn and the sink use them;
    the list of waiters is made when someone first waits (a paused transport).
    """

    __slots__ = ("_set", "_waiters")

    def __init__(self, *, set_: bool = False) -> None:
        self._set = set_
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class _Flusher:
    """Writes every socket's frames of one event-loop turn in one system call each.

    A batch of room messages read from the broker in one turn reaches a
    connection as several frames; they go out together at the start of the next
    turn, so the cost of a write is paid per connection per turn, not per frame.
    """

    __slots__ = ("_due",)

    def __init__(self) -> None:
        self._due: list[_Sink] = []

    def due(self, sink: _Sink) -> None:
        if not self._due:
            sink._protocol.loop.call_soon(self._flush)
        self._due.append(sink)

    def _flush(self) -> None:
        due, self._due = self._due, []
        for sink in due:
            try:
                sink.flush()
            except Exception:  # one broken transport must not strand the others
                log.exception("pachinko.flush_failed")


_FLUSHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = (
    weakref.WeakKeyDictionary()
)


def _flusher_of(loop: asyncio.AbstractEventLoop) -> _Flusher:
    flusher = _FLUSHERS.get(loop)
    if flusher is None:
        flusher = _FLUSHERS[loop] = _Flusher()
    return flusher
