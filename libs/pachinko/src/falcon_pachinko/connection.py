"""One WebSocket connection: the ``ws`` object resources and handlers receive.

:class:`Connection` is a thin async adapter. The rules live in
:class:`falcon_pachinko.session.Session`, which does no I/O; the connection feeds it
(sends, room traffic, received frames, the accept, closes) and performs what it
decides: one writer task writes the session's outbound stream, and a close the
session orders at once (an overflow, an abort, an internal error) is done by a
separate task that abandons the write in flight. So:

* frames reach the client in the order they were queued;
* fan-out never awaits a socket: a broadcast only appends to queues;
* a client that does not read fast enough fills its queue (counted in frames and
  in UTF-8 bytes) and is closed with :attr:`CloseCode.SLOW_CONSUMER`; it can never
  stall a room or grow memory without bound;
* a writer that fails unexpectedly is logged and closes the connection with
  :attr:`CloseCode.INTERNAL_ERROR`.
* a deadline (:meth:`Connection.close_after`, e.g. credentials expiring) is one
  ``loop.call_at`` timer per connection, armed while it is open, never a poll;
  when it fires, the session decides the close and the writer sends it.

Before the handshake is accepted (inside ``on_connect``), direct sends are held
aside and go out first, right after the accept, ahead of any room traffic that
arrived in the meantime. They count against the same limits; as nothing drains
the queue before the accept, a direct send that would have to wait for space
closes the connection (1011) and raises instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import falcon.errors
import msgspec
import structlog

from .close_codes import CloseCode, ReceivedCloseCode
from .errors import ConnectionClosed
from .ratelimit import RateLimit
from .session import Admission, Close, Inbound, QueueLimits, Send, Session, State
from .wire import FrameSink

if TYPE_CHECKING:
    import falcon.asgi

    from .dispatch import HandlerSpec

__all__ = ["Connection", "ConnectionLimits", "WebSocketLike"]

log = structlog.get_logger(__name__)

_encoder: Final = msgspec.json.Encoder()
#: At most this many bytes of queued frames go out in one write.
_COALESCE_BYTES: Final = 256 * 1024


@runtime_checkable
class WebSocketLike(Protocol):
    """The WebSocket API that resources and handlers program against."""

    @property
    def closed(self) -> bool: ...

    async def send_media(self, media: object) -> None: ...

    async def send_text(self, payload: str) -> None: ...

    async def send_data(self, payload: bytes) -> None: ...

    async def close(self, code: int = CloseCode.NORMAL, reason: str | None = None) -> None: ...


class ConnectionLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on one connection: its outbound queue, what it may send, how long it may take.

    Every limit has a default; each is documented with its reason.

    Attributes:
        max_queue_messages: Frames that may wait for a slow client before it is
            closed with ``SLOW_CONSUMER``. 1024 leaves room for bursts in a busy
            room while keeping a stuck client's footprint small.
        max_queue_bytes: Bytes that may wait: UTF-8 bytes of text, bytes of binary.
            4 MiB bounds the memory a stuck client can hold regardless of frame sizes.
        close_timeout_s: How long a closing connection may take to flush its queue
            and send its close frame before it is dropped.
        rate_per_s: Frames per second a client may send, sustained; ``0`` disables
            the limit. Frames over budget go to ``on_rate_limited`` instead of a
            handler; a client that keeps on is closed with ``POLICY_VIOLATION``
            (see :mod:`falcon_pachinko.session`). 50/s is far above what a person
            does and far below what one connection can cost a server.
        rate_burst: Frames a client may send back to back above the sustained
            rate (the bucket's size). 100: two seconds' worth.
        max_rooms: Rooms one connection may be in at once; joining one more
            raises :class:`~falcon_pachinko.errors.RoomLimitExceeded`. 100 bounds
            what one connection can make a process subscribe to.
        connect_timeout_s: How long ``on_connect`` may run before it is cancelled
            and the handshake refused with HTTP 503; ``None`` for no bound. 10 s:
            longer than any healthy backend round trip, short enough that stuck
            handshakes cannot pile up.
    """

    max_queue_messages: int = 1024
    max_queue_bytes: int = 4 * 1024 * 1024
    close_timeout_s: float = 5.0
    rate_per_s: float = 50.0
    rate_burst: int = 100
    max_rooms: int = 100
    connect_timeout_s: float | None = 10.0

    def __post_init__(self) -> None:
        if self.max_queue_messages < 1 or self.max_queue_bytes < 1:
            raise ValueError("outbound queue limits must be positive")
        if self.close_timeout_s <= 0:
            raise ValueError("close_timeout_s must be positive")
        if self.max_rooms < 1:
            raise ValueError("max_rooms must be at least 1")
        if self.connect_timeout_s is not None and not self.connect_timeout_s > 0:
            raise ValueError("connect_timeout_s must be positive (or None for no bound)")
        RateLimit(rate_per_s=self.rate_per_s, burst=self.rate_burst)  # its checks

    @property
    def queue(self) -> QueueLimits:
        """The outbound queue bounds, as the session takes them."""
        return QueueLimits(max_messages=self.max_queue_messages, max_bytes=self.max_queue_bytes)

    @property
    def rate(self) -> RateLimit:
        """The message budget, as the session takes it.

        Raises:
            ValueError: ``rate_per_s`` is negative or ``rate_burst`` below 1.
        """
        return RateLimit(rate_per_s=self.rate_per_s, burst=self.rate_burst)


def encode_text(message: object) -> bytes:
    """Encode a message for the wire: JSON, unless it is already encoded.

    ``str`` and ``bytes`` are taken to be JSON text already; anything else is
    encoded with msgspec (dicts, lists, ``msgspec.Struct`` instances, ...).
    """
    if isinstance(message, bytes):
        return message
    if isinstance(message, str):
        return message.encode()
    return _encoder.encode(message)


class Connection:
    """A server-side WebSocket connection with a bounded outbound queue.

    Instances are created by the library, one per accepted route match; user code
    receives them as ``ws``. They satisfy :class:`WebSocketLike`.

    Args:
        raw: The underlying ``falcon.asgi.WebSocket``.
        limits: Outbound queue and shutdown bounds.
        handlers: The resource class's handler registry, for :meth:`receive`.
        clock: Monotonic seconds, passed to the session as ``now``.

    Attributes:
        id: Cluster-unique id of the connection (used for ``exclude_self``).
        raw: The underlying ``falcon.asgi.WebSocket``.
    """

    def __init__(
        self,
        raw: falcon.asgi.WebSocket,
        limits: ConnectionLimits,
        handlers: Mapping[str, HandlerSpec] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        connection_id: str | None = None,
        wire: FrameSink | None = None,
    ) -> None:
        self.id: Final = connection_id if connection_id is not None else uuid.uuid4().hex
        self.raw: Final = raw
        #: The socket as the server lends it (see :mod:`falcon_pachinko.wire`), if it does.
        self._wire = wire
        #: The writer holds a frame it took from the queue and has not written yet.
        self._in_flight = False
        self._limits = limits
        self._clock = clock
        self._session = Session(
            limits.queue, {} if handlers is None else handlers, rate=limits.rate
        )
        #: The one timer of the session's deadline, armed while the connection is open.
        self._timer: asyncio.TimerHandle | None = None
        # Made when first waited on: most connections never wait for either.
        self._wakeup: asyncio.Event | None = None
        self._space: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._accepted = False
        #: The bound of the receive loop's read in progress (see :meth:`reading`).
        self._read_bound: asyncio.Timeout | None = None

    # -- WebSocketLike -------------------------------------------------------

    @property
    def closed(self) -> bool:
        """``True`` once the connection is closing or closed."""
        return self._session.closed

    @property
    def close_code(self) -> int | None:
        """The code the connection was first closed with; ``None`` while open."""
        return self._session.close_code

    @property
    def limits(self) -> ConnectionLimits:
        """The bounds this connection was opened with."""
        return self._limits

    @property
    def accepted(self) -> bool:
        """``True`` once the handshake has been accepted."""
        return self._accepted

    @property
    def subprotocols(self) -> tuple[str, ...]:
        """Subprotocols the client offered."""
        return self.raw.subprotocols

    async def send_media(self, media: object) -> None:
        """Queue ``media`` encoded as a JSON text frame.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        await self._send(Send.of_utf8(_encoder.encode(media)))

    async def send_encoded(self, data: bytes) -> None:
        """Queue UTF-8 JSON text that is encoded already, as a text frame.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        await self._send(Send.of_utf8(data))

    async def send_text(self, payload: str) -> None:
        """Queue a text frame, waiting while the outbound queue is full.

        Raises:
            ConnectionClosed: The connection is closing or closed, or the frame
                overflowed the queue before the handshake was accepted.
        """
        if not isinstance(payload, str):
            raise TypeError("payload must be a str")
        await self._send(Send.of_text(payload))

    async def send_data(self, payload: bytes) -> None:
        """Queue a binary frame, waiting while the outbound queue is full.

        Raises:
            ConnectionClosed: The connection is closing or closed, or the frame
                overflowed the queue before the handshake was accepted.
        """
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError("payload must be bytes")
        await self._send(Send.of_binary(bytes(payload)))

    async def close(self, code: int = CloseCode.NORMAL, reason: str | None = None) -> None:
        """Close the connection after the frames already queued have been sent.

        Before the accept this refuses the handshake and nothing queued goes out.
        Closing an already closing connection does nothing.
        """
        self._session.close(code, reason)
        self._perform()

    def close_after(
        self,
        seconds: float | None,
        code: int = CloseCode.CREDENTIALS_EXPIRED,
        reason: str | None = None,
    ) -> None:
        """Close the connection ``seconds`` from now (see :meth:`Session.close_at`).

        Usable before the accept (inside ``on_connect``): a deadline that passes
        during the handshake closes the connection right after the accept, so the
        client receives ``code``. A later call replaces the deadline; ``None``
        removes it. Zero or a negative number closes at once (or at the accept).

        Args:
            seconds: Time left, in seconds; ``None`` for no deadline.
            code: The close code; by default ``CREDENTIALS_EXPIRED`` (4002).
            reason: A short reason, cut to 123 UTF-8 bytes.
        """
        deadline = None if seconds is None else self._clock() + seconds
        self._session.close_at(deadline, code, reason)
        self._tick()

    # -- used by the library -------------------------------------------------

    @property
    def session(self) -> Session:
        """The sans-I/O session this connection performs."""
        return self._session

    def offer_text(self, text: str) -> bool:
        """Queue a room message without waiting; overflow closes the connection.

        Returns:
            ``False`` if the connection is closed or was closed by this overflow.
        """
        return self.offer(Send.of_text(text))

    def offer(self, frame: Send) -> bool:
        """Queue a prepared frame without waiting; overflow closes the connection.

        A broadcast prepares its frame once and offers that same object to every
        recipient, so nothing is decoded or measured per recipient. When nothing
        waits in the queue and the socket the server lent takes it now, the
        frame is written at once instead (no task switch).

        Returns:
            ``False`` if the connection is closed or was closed by this overflow.
        """
        if self._write_now(frame):
            return True
        queued = self._session.offer(frame, self._clock())
        self._perform()
        return queued

    def offer_all(self, frames: list[Send]) -> bool:
        """Queue ``frames`` only if all of them fit; queue nothing otherwise.

        Returns:
            Whether they were queued (``False`` too if the connection is closed).
        """
        if self._session.closed or not self._session.fits(
            len(frames), sum(frame.size for frame in frames)
        ):
            return False
        return all(self.offer(frame) for frame in frames)

    def offer_bytes(self, data: bytes) -> bool:
        """Queue a room message of UTF-8 JSON bytes as a text frame, without waiting.

        Returns:
            ``False`` if the connection is closed or was closed by this overflow.
        """
        return self.offer(Send.of_utf8(data))

    def reading(self) -> asyncio.Timeout:
        """A bound for one read of the receive loop: it expires when the close begins.

        Enter it at once (``async with conn.reading():``). Once the connection
        starts closing its socket nothing more is read, as Falcon's ``close``
        ends its buffered reads: a close frame that cannot go out (a client that
        stopped reading) must not leave the receive loop waiting for ever.
        """
        bound = self._read_bound = asyncio.timeout(None)
        return bound

    def _end_reads(self) -> None:
        bound, self._read_bound = self._read_bound, None
        if bound is not None:
            try:
                bound.reschedule(asyncio.get_running_loop().time())
            except RuntimeError:
                pass  # that read is over already

    def receive(self, frame: str | bytes) -> Inbound:
        """Decide what a received frame is for (see :meth:`Session.receive`)."""
        decision = self._session.receive(frame, self._clock())
        self._perform()
        return decision

    async def accept(self, subprotocol: str | None = None) -> None:
        """Accept the handshake and start the writer.

        Frames sent during the handshake go out first, then queued room traffic.
        """
        await self.raw.accept(subprotocol=subprotocol)
        self._accepted = True
        self._session.accept(self._clock())
        if self._wire is None:
            self._writer = asyncio.create_task(
                self._write_loop(), name=f"pachinko-writer-{self.id}"
            )
        self._perform()
        self._arm()

    def abort(self, code: int, reason: str | None = None) -> None:
        """Close now, dropping whatever is still queued."""
        self._session.abort(code, reason)
        self._perform()

    def mark_closed(self, code: int) -> None:
        """Record that the peer closed the connection (or it was lost)."""
        self._session.peer_closed(code)
        self._perform()

    async def finish(self) -> None:
        """Wait, within ``close_timeout_s``, for queued frames and the close frame."""
        tasks = [t for t in (self._writer, self._closer) if t is not None and not t.done()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self._limits.close_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._disarm()
        self._session.finished()
        self._perform()

    # -- performing the session's decisions ----------------------------------

    def _write_now(self, frame: Send) -> bool:
        # The fast path: nothing waits, the writer holds nothing, and the socket
        # the server lent takes it now. Written whole, with no task switch.
        wire = self._wire
        if (
            wire is not None
            and not self._in_flight
            and self._session.may_write_now()
            and wire.writable()
        ):
            wire.write(frame.wire)
            return True
        return False

    async def _send(self, frame: Send) -> None:
        if self._write_now(frame):
            return  # as room traffic: nothing waits, the socket takes it
        was_closed = self._session.closed
        while True:
            admission = self._session.send(frame, self._clock())
            self._perform()
            if admission is Admission.QUEUED:
                return
            if admission is Admission.CLOSED:
                if not was_closed:
                    log.warning("pachinko.handshake_queue_overflow", connection_id=self.id)
                raise ConnectionClosed(self.close_code or CloseCode.NORMAL)
            if self._space is None:
                self._space = asyncio.Event()
            self._space.clear()
            await self._space.wait()

    def _tick(self) -> None:
        self._session.tick(self._clock())
        self._perform()
        self._arm()

    def _arm(self) -> None:
        # One timer per connection, for its one deadline: no polling. Before the
        # accept nothing is armed; the accept checks the deadline and arms.
        self._disarm()
        deadline = self._session.deadline
        if deadline is None or self._session.state is not State.OPEN:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - self._clock())
        self._timer = loop.call_at(loop.time() + delay, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        self._tick()  # re-arms if the clock is not quite there yet

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _perform(self) -> None:
        for action in self._session.actions():
            self._close_now(action)
        # Cheap and idempotent: the writer and waiting senders re-check the session.
        if self._wakeup is not None:
            self._wakeup.set()
        if self._space is not None and self._session.closed:
            self._space.set()
        if self._wire is not None and self._accepted and self._session.backlog:
            # With a lent socket the writer runs only while frames wait: an idle
            # connection holds no task.
            writer = self._writer
            if writer is None or writer.done():
                self._writer = asyncio.create_task(
                    self._write_loop(), name=f"pachinko-writer-{self.id}"
                )

    def _close_now(self, action: Close) -> None:
        if action.code == CloseCode.SLOW_CONSUMER:
            log.warning("pachinko.slow_consumer", connection_id=self.id)
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()  # abandon the write in flight; the queue is dropped
        self._closer = asyncio.create_task(self._close_raw(action.code, action.reason))

    async def _write_loop(self) -> None:
        try:
            while await self._write_next():
                pass
        except (falcon.errors.WebSocketDisconnected, ConnectionError) as exc:
            # Nothing will drain the queue now: release senders waiting for space.
            self.mark_closed(getattr(exc, "code", ReceivedCloseCode.ABNORMAL_CLOSURE))
        except Exception:
            # NOTE: a bug below us (server, middleware, Falcon). Log it here, where
            # the traceback is, and close: an open socket nobody writes to would
            # only fill up until it overflowed.
            log.exception("pachinko.writer_failed", connection_id=self.id)
            self._session.fail()
            self._perform()
        finally:
            # A writer that went idle (a lent socket) or ended is let go: a done
            # task still holds its coroutine, and idle connections are many.
            if self._writer is asyncio.current_task():
                self._writer = None

    async def _write_next(self) -> bool:
        # One step of the writer; False when it is done (or, with a lent socket, idle).
        wire = self._wire
        if wire is not None and self._session.backlog and not wire.writable():
            # Wait with the frames still queued, so that nothing offered
            # meanwhile can skip ahead of them.
            await wire.drained()
        item = self._session.next_frame()
        if item is None:
            if self._session.output_ended or wire is not None:
                return False  # done, or idle: offering frames starts it again
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            self._wakeup.clear()
            await self._wakeup.wait()
            return True
        if self._space is not None:
            self._space.set()
        if isinstance(item, Close):
            await self._close_raw(item.code, item.reason)
            return False
        if wire is not None and wire.writable():
            # Frames queued behind it go out with it, in one write.
            frames = [item, *self._session.next_sends(_COALESCE_BYTES)]
            wire.write(b"".join(frame.wire for frame in frames))
            return True
        self._in_flight = True
        try:
            await self._write(item)
        finally:
            self._in_flight = False
        return True

    async def _write(self, frame: Send) -> None:
        payload = frame.payload
        if frame.text:
            await self.raw.send_text(frame.as_text())
        elif isinstance(payload, bytes):
            await self.raw.send_data(payload)
        else:  # pragma: no cover - Send.of_binary only builds frames of bytes
            await self.raw.send_data(payload.encode())

    async def _close_raw(self, code: int, reason: str | None) -> None:
        self._end_reads()
        try:
            await self.raw.close(code, reason)
        except (falcon.errors.WebSocketDisconnected, OSError):
            pass  # the peer is gone (uvicorn's ClientDisconnected is an OSError)
        except Exception:  # noqa: BLE001 - a failing close must not leak out of a task
            log.exception("pachinko.close_failed", connection_id=self.id)

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self._session.state.value}>"
