"""One WebSocket connection: the ``ws`` object resources and handlers receive.

Every frame a connection sends, whether a handler's direct ``send_media`` or a room
broadcast, goes through one bounded outbound queue drained by one writer task. So:

* frames reach the client in the order they were queued;
* fan-out never awaits a socket: a broadcast only appends to queues;
* a client that does not read fast enough fills its queue and is closed with
  :attr:`CloseCode.SLOW_CONSUMER`; it can never stall a room or grow memory
  without bound.

Before the handshake is accepted (inside ``on_connect``), direct sends are held
aside and go out first, right after the accept, ahead of any room traffic that
arrived in the meantime.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections import deque
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import falcon.errors
import msgspec
import structlog

from .close_codes import CloseCode
from .errors import ConnectionClosed

if TYPE_CHECKING:
    import falcon.asgi

__all__ = ["Connection", "ConnectionLimits", "WebSocketLike"]

log = structlog.get_logger(__name__)

_encoder: Final = msgspec.json.Encoder()


@runtime_checkable
class WebSocketLike(Protocol):
    """The WebSocket API that resources and handlers program against."""

    @property
    def closed(self) -> bool: ...

    async def send_media(self, media: object) -> None: ...

    async def send_text(self, payload: str) -> None: ...

    async def send_data(self, payload: bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class ConnectionLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on one connection's outbound queue and on its shutdown.

    Attributes:
        max_queue_messages: Frames that may wait for a slow client before it is
            closed with ``SLOW_CONSUMER``. 1024 leaves room for bursts in a busy
            room while keeping a stuck client's footprint small.
        max_queue_bytes: Characters of text (bytes of binary) that may wait. 4 MiB
            bounds the memory a stuck client can hold regardless of frame sizes.
        close_timeout_s: How long a closing connection may take to flush its queue
            and send its close frame before it is dropped.
    """

    max_queue_messages: int = 1024
    max_queue_bytes: int = 4 * 1024 * 1024
    close_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_queue_messages < 1 or self.max_queue_bytes < 1:
            raise ValueError("outbound queue limits must be positive")
        if self.close_timeout_s <= 0:
            raise ValueError("close_timeout_s must be positive")


class _State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class _CloseFrame(msgspec.Struct, frozen=True):
    code: int
    reason: str | None


_Frame = str | bytes | _CloseFrame


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

    Attributes:
        id: Cluster-unique id of the connection (used for ``exclude_self``).
        raw: The underlying ``falcon.asgi.WebSocket``.
    """

    def __init__(self, raw: falcon.asgi.WebSocket, limits: ConnectionLimits) -> None:
        self.id: Final = uuid.uuid4().hex
        self.raw: Final = raw
        self._limits = limits
        self._state = _State.HANDSHAKE
        self._early: list[_Frame] = []
        self._queue: deque[_Frame] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self.close_code: int | None = None

    # -- WebSocketLike -------------------------------------------------------

    @property
    def closed(self) -> bool:
        """``True`` once the connection is closing or closed."""
        return self._state in (_State.CLOSING, _State.CLOSED)

    @property
    def subprotocols(self) -> tuple[str, ...]:
        """Subprotocols the client offered."""
        return self.raw.subprotocols

    async def send_media(self, media: object) -> None:
        """Queue ``media`` encoded as a JSON text frame.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        await self.send_text(_encoder.encode(media).decode())

    async def send_text(self, payload: str) -> None:
        """Queue a text frame, waiting while the outbound queue is full.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if not isinstance(payload, str):
            raise TypeError("payload must be a str")
        await self._send(payload)

    async def send_data(self, payload: bytes) -> None:
        """Queue a binary frame, waiting while the outbound queue is full.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError("payload must be bytes")
        await self._send(bytes(payload))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection after the frames already queued have been sent.

        Closing an already closing connection does nothing.
        """
        reason = _truncate_reason(reason)
        if self._state is _State.HANDSHAKE:
            # Rejecting the handshake: nothing queued may go out.
            self._early.clear()
            self._queue.clear()
            self._set_closing(code)
            return
        if self.closed:
            return
        self._set_closing(code)
        self._queue.append(_CloseFrame(code, reason))
        self._wakeup.set()

    # -- used by the library -------------------------------------------------

    def offer_text(self, text: str) -> bool:
        """Queue a room message without waiting; overflow closes the connection.

        Returns:
            ``False`` if the connection is closed or was closed by this overflow.
        """
        if self.closed:
            return False
        if self._would_overflow(len(text)):
            log.warning("pachinko.slow_consumer", connection_id=self.id)
            self.abort(CloseCode.SLOW_CONSUMER, "slow consumer")
            return False
        self._queue.append(text)
        self._queued_bytes += len(text)
        self._wakeup.set()
        return True

    async def accept(self, subprotocol: str | None = None) -> None:
        """Accept the handshake and start the writer.

        Frames sent during the handshake go out first, then queued room traffic.
        """
        await self.raw.accept(subprotocol=subprotocol)
        self._state = _State.OPEN
        self._queue.extendleft(reversed(self._early))
        self._early.clear()
        self._writer = asyncio.create_task(self._write_loop(), name=f"pachinko-writer-{self.id}")
        self._wakeup.set()

    def abort(self, code: int, reason: str | None = None) -> None:
        """Close now, dropping whatever is still queued."""
        if self._state is _State.CLOSED or self._closer is not None:
            return
        self._queue.clear()
        self._queued_bytes = 0
        self._set_closing(code)
        if self._writer is not None:
            self._writer.cancel()
        self._closer = asyncio.create_task(self._close_raw(code, _truncate_reason(reason)))

    def mark_closed(self, code: int) -> None:
        """Record that the peer closed the connection (or it was lost)."""
        if self.close_code is None:
            self.close_code = code
        self._state = _State.CLOSED
        self._queue.clear()
        self._space.set()
        self._wakeup.set()

    async def finish(self) -> None:
        """Wait, within ``close_timeout_s``, for queued frames and the close frame."""
        tasks = [t for t in (self._writer, self._closer) if t is not None and not t.done()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self._limits.close_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._state = _State.CLOSED

    # -- internals -----------------------------------------------------------

    def _set_closing(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
        self._state = _State.CLOSING
        self._space.set()

    def _backlog(self) -> int:
        return len(self._queue) + len(self._early)

    def _would_overflow(self, size: int) -> bool:
        return (
            self._backlog() >= self._limits.max_queue_messages
            or self._queued_bytes + size > self._limits.max_queue_bytes
        )

    async def _send(self, frame: str | bytes) -> None:
        # An empty queue is never full: a frame larger than the byte budget waits
        # for nothing and goes out alone (waiting for space could never end).
        while not self.closed and self._backlog() and self._would_overflow(len(frame)):
            self._space.clear()
            await self._space.wait()
        if self.closed:
            raise ConnectionClosed(self.close_code or CloseCode.NORMAL)
        if self._state is _State.HANDSHAKE:
            self._early.append(frame)
        else:
            self._queue.append(frame)
            self._wakeup.set()
        self._queued_bytes += len(frame)

    async def _write_loop(self) -> None:
        try:
            while True:
                while not self._queue:
                    if self._state is _State.CLOSED:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                frame = self._queue.popleft()
                if isinstance(frame, _CloseFrame):
                    await self._close_raw(frame.code, frame.reason)
                    return
                self._queued_bytes -= len(frame)
                self._space.set()
                await self._write(frame)
        except (falcon.errors.WebSocketDisconnected, ConnectionError) as exc:
            # Nothing will drain the queue now: release senders waiting for space.
            self.mark_closed(getattr(exc, "code", 1006))

    async def _write(self, frame: str | bytes) -> None:
        if isinstance(frame, str):
            await self.raw.send_text(frame)
        else:
            await self.raw.send_data(frame)

    async def _close_raw(self, code: int, reason: str | None) -> None:
        try:
            await self.raw.close(code, reason)
        except (falcon.errors.WebSocketDisconnected, ConnectionError):
            pass
        except Exception:  # noqa: BLE001 - a failing close must not leak out of a task
            log.exception("pachinko.close_failed", connection_id=self.id)

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self._state.value}>"


def _truncate_reason(reason: str | None) -> str | None:
    # RFC 6455 5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
    if reason is None:
        return None
    return reason.encode()[:123].decode(errors="ignore")
