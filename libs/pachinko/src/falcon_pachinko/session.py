"""The rules of one connection, without I/O: inputs go in, actions come out.

A :class:`Session` owns everything a connection decides, and nothing it does:

* its state, ``HANDSHAKE → OPEN → CLOSING → CLOSED``;
* the bounded outbound queue and its overflow policy, counted in frames and in
  UTF-8 bytes;
* frames sent during the handshake, held aside and put first at the accept;
* the close decisions (a graceful close, an overflow, an abort, a peer close);
* what a received frame is for (:func:`falcon_pachinko.dispatch.decide`);
* the per-connection limits on what comes in and for how long: the message
  budget (a :class:`~falcon_pachinko.ratelimit.TokenBucket`) and a deadline.

It never awaits, never touches a socket and never reads a clock: the time is
passed in as ``now``. :class:`falcon_pachinko.connection.Connection` drives it
and performs its actions, as ``websockets``' asyncio connection drives its
sans-I/O ``protocol.py``::

    adapter                                session
    -------                                -------
    accept done      ─── accept(now) ──────▶ OPEN, early frames first
    room traffic     ─── offer(frame, now) ─▶ queued, or overflow: Close(4001) action
    handler's send   ─── send(frame, now) ──▶ QUEUED | FULL (wait for space) | CLOSED
    frame received   ─── receive(f, now) ───▶ Dispatch | Invalid | Unhandled
                                              | RateLimited | Drop
    a deadline       ─── close_at(t, code) ─▶ deadline (the adapter arms a timer)
    timer            ─── tick(now) ─────────▶ Close once the deadline has passed
    close / abort    ─── close() / abort() ─▶ Close queued last / Close action now
    peer went away   ─── peer_closed(code)
    writer           ◀── next_frame() ─────── Send | Close | None, in queue order
    after any input  ◀── actions() ────────── [Close]: close the socket now

Two outputs keep two orders apart. :meth:`Session.next_frame` is the outbound
stream: frames, then at most one :class:`Close`, exactly in the order the client
must see them; the writer takes one at a time. :meth:`Session.actions` holds what
must happen at once, ahead of the stream: a :class:`Close` from an overflow or an
abort, which drops whatever was queued.

Limits, and what breaking them does:

* **Message budget.** Each received frame takes a token from a bucket of
  ``burst`` tokens refilled at ``rate_per_s``. A frame that finds none is
  :class:`RateLimited`: it is not dispatched, so a handler never sees it and it
  is never broadcast. Over any interval of length ``T`` at most
  ``burst + rate_per_s * T`` frames are dispatched.
* **Flooding.** Refused frames draw from a second bucket of the same size and
  rate. A refusal that finds that one empty too closes the session with
  ``POLICY_VIOLATION`` (1008), after the frames already queued (so the client
  sees the errors it was sent, then the close). In words: a client is closed once,
  over some interval of length ``T``, more than ``burst + rate_per_s * T`` of its
  frames were *refused*, i.e. it kept sending at more than twice its budget
  after being told. Why this rule: a client that overshoots briefly (a paste, a
  retry) is only slowed down; one that ignores the refusals is cut off within
  about ``burst`` refused frames, whatever its speed; it needs no window of
  timestamps (constant memory) and no knob beyond the budget itself.
* **Deadline.** :meth:`Session.close_at` sets a time by which the connection
  ends (credentials expiring, a maximum lifetime). :meth:`Session.tick`, or any
  received frame, at or after it closes the session gracefully with the given
  code; no frame received at or after the deadline is dispatched. A deadline that
  passes before the accept closes the session right after it, so the client
  learns the code (a refused handshake could not tell it).

Bad input from the peer never raises here: it becomes a decision or a close.
Exceptions are for programmer errors.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import msgspec

from .close_codes import CloseCode
from .dispatch import Dispatch, HandlerSpec, Invalid, Unhandled, decide
from .frames import (
    Action,
    Admission,
    Close,
    Drop,
    Inbound,
    Outbound,
    RateLimited,
    Send,
    truncate_reason,
    utf8_size,
)
from .ratelimit import RateLimit

__all__ = [
    "Action",
    "Admission",
    "Close",
    "Dispatch",
    "Drop",
    "Inbound",
    "Invalid",
    "Outbound",
    "QueueLimits",
    "RateLimit",
    "RateLimited",
    "Send",
    "Session",
    "State",
    "Unhandled",
    "truncate_reason",
    "utf8_size",
]

_NO_HANDLERS: Final[Mapping[str, HandlerSpec]] = MappingProxyType({})
_NO_DEADLINE_CLOSE: Final[tuple[int, str | None]] = (CloseCode.NORMAL, None)


class QueueLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on one session's outbound queue.

    Attributes:
        max_messages: Frames that may wait to be written.
        max_bytes: Bytes (UTF-8 for text) that may wait to be written.
    """

    max_messages: int = 1024
    max_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_messages < 1 or self.max_bytes < 1:
            raise ValueError("outbound queue limits must be positive")


class State(enum.Enum):
    """Where a session is in its life."""

    #: ``on_connect`` runs; nothing may reach the client yet.
    HANDSHAKE = "handshake"
    #: Accepted: frames flow both ways.
    OPEN = "open"
    #: A close was decided; queued frames (if any) and the close frame go out.
    CLOSING = "closing"
    #: Nothing more goes out or comes in.
    CLOSED = "closed"


# -- the session -----------------------------------------------------------------


class Session:
    """One connection's state, outbound queue and decisions; no I/O.

    Args:
        limits: Outbound queue bounds.
        handlers: The resource class's handler registry; with none, every frame
            is :class:`Unhandled`.
        rate: The message budget of received frames; none when ``None`` or
            disabled (``rate_per_s=0``).

    Attributes:
        close_code: The code of the first close decided (or reported by the peer);
            ``None`` while the session is not closing.
    """

    def __init__(
        self,
        limits: QueueLimits,
        handlers: Mapping[str, HandlerSpec] = _NO_HANDLERS,
        *,
        rate: RateLimit | None = None,
    ) -> None:
        self.limits: Final = limits
        self._handlers = handlers
        budget = rate if rate is not None and rate.enabled else None
        #: Tokens for frames dispatched, and for frames refused (the flood rule).
        self._budget = budget.bucket() if budget is not None else None
        self._flood = budget.bucket() if budget is not None else None
        self._deadline: float | None = None
        self._deadline_close = _NO_DEADLINE_CLOSE
        self._state = State.HANDSHAKE
        # The containers below are made when first needed and let go when
        # emptied: an idle connection holds none of them.
        #: Frames sent during the handshake; they go out first at the accept.
        self._early: list[Send] | None = None
        self._queue: deque[Outbound] | None = None
        #: Bytes of every frame in ``_early`` and ``_queue``.
        self._queued_bytes = 0
        self._actions: list[Action] | None = None
        #: A close frame was queued or handed out: no second one may follow.
        self._close_emitted = False
        self._aborted = False
        self.close_code: int | None = None
        self.close_reason: str | None = None

    # -- state -----------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def closed(self) -> bool:
        """``True`` once a close was decided (``CLOSING``) or happened (``CLOSED``)."""
        return self._state is State.CLOSING or self._state is State.CLOSED

    @property
    def output_ended(self) -> bool:
        """``True`` once the outbound stream will yield nothing more.

        The session is closed, or it was aborted (the close is an action then).
        """
        return self._state is State.CLOSED or self._aborted

    @property
    def deadline(self) -> float | None:
        """When the session closes by itself (see :meth:`close_at`); ``None`` if never."""
        return None if self.closed else self._deadline

    @property
    def backlog(self) -> int:
        """Frames waiting to be written, early ones included."""
        return (len(self._queue) if self._queue else 0) + (len(self._early) if self._early else 0)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be written, early ones included."""
        return self._queued_bytes

    def fits(self, frames: int, size: int) -> bool:
        """Whether ``frames`` more frames of ``size`` bytes in all may be queued now."""
        return (
            self.backlog + frames <= self.limits.max_messages
            and self._queued_bytes + size <= self.limits.max_bytes
        )

    # -- inputs ----------------------------------------------------------------

    def accept(self, now: float) -> None:
        """The handshake was accepted: open, with the early frames first.

        If the session was closed while the accept was under way, the socket is
        open now and must still be closed properly: the close frame is queued.

        Args:
            now: The current time, in seconds.
        """
        if self._state is State.HANDSHAKE:
            self._state = State.OPEN
            if self._early:
                self._queued().extendleft(reversed(self._early))
            self._early = None
            self.tick(now)  # a deadline that passed during the handshake
        elif self._state is State.CLOSING and not self._close_emitted:
            self._emit_close_last()

    def offer(self, frame: Send, now: float) -> bool:
        """Queue room traffic without waiting; an overflow closes the session.

        Overflow means the frame would exceed either limit. The session then
        closes with ``SLOW_CONSUMER`` (4001) and drops whatever was queued: a
        client that does not read can never hold up a room or grow memory.

        Args:
            frame: The frame to queue.
            now: The current time, in seconds.

        Returns:
            ``False`` if the session is closed, or was closed by this overflow.
        """
        if self.closed:
            return False
        if self._would_overflow(frame.size):
            self.abort(CloseCode.SLOW_CONSUMER, "slow consumer")
            return False
        # Room traffic queues behind the early frames even before the accept.
        self._queued().append(frame)
        self._queued_bytes += frame.size
        return True

    def send(self, frame: Send, now: float) -> Admission:
        """Queue a frame a handler sends directly; it may wait for space.

        An empty queue is never full: a frame larger than the byte budget goes out
        alone (waiting for space could never end). Before the accept nothing
        drains the queue, so a send that would need to wait fails instead: the
        session closes with ``INTERNAL_ERROR`` (1011), since the application
        queued more before the accept than the connection may hold.

        Args:
            frame: The frame to queue.
            now: The current time, in seconds.

        Returns:
            :attr:`Admission.QUEUED`, :attr:`Admission.FULL` (wait for space and
            send again) or :attr:`Admission.CLOSED`.
        """
        if self.closed:
            return Admission.CLOSED
        if self.backlog and self._would_overflow(frame.size):
            if self._state is State.OPEN:
                return Admission.FULL
            self.abort(CloseCode.INTERNAL_ERROR, "handshake queue overflow")
            return Admission.CLOSED
        if self._state is State.HANDSHAKE:
            if self._early is None:
                self._early = []
            self._early.append(frame)
        else:
            self._queued().append(frame)
        self._queued_bytes += frame.size
        return Admission.QUEUED

    def receive(self, frame: str | bytes, now: float) -> Inbound:
        """Decide what one received frame is for.

        The deadline is checked first (a frame at or after it closes the session
        and is dropped), then the message budget, then the frame is decoded.

        Args:
            frame: The frame's text or bytes, as received.
            now: The current time, in seconds.

        Returns:
            :class:`Dispatch` (call a handler), :class:`Invalid` (a handled type
            whose content failed validation), :class:`Unhandled`,
            :class:`RateLimited` (over budget: not dispatched; ``closing`` when
            this refusal closed the session), or :class:`Drop` when the session
            is no longer open. Never raises because of the frame's content.
        """
        self.tick(now)
        if self._state is not State.OPEN:
            return Drop()
        if self._budget is not None and not self._budget.take(now):
            return self._refuse(now)
        return decide(self._handlers, frame)

    def close_at(self, deadline: float | None, code: int, reason: str | None = None) -> None:
        """End the session at ``deadline``: a graceful close with ``code``.

        A later call replaces the deadline (a resource that renewed credentials
        may extend it); ``None`` removes it. Nothing happens until :meth:`tick`
        (or :meth:`receive`, or :meth:`accept`) sees a ``now`` at or after it.

        Args:
            deadline: On the same clock as every ``now``; ``None`` for none.
            code: The close code (``CREDENTIALS_EXPIRED``, 4002, for a token).
            reason: A short reason, cut to 123 UTF-8 bytes.
        """
        self._deadline = deadline
        self._deadline_close = (code, reason)

    def tick(self, now: float) -> Close | None:
        """Let time pass: close the session if its deadline has come.

        Before the accept nothing closes (the accept checks the deadline again).

        Args:
            now: The current time, in seconds.

        Returns:
            The :class:`Close` decided now (it is queued last on the outbound
            stream), or ``None``.
        """
        deadline = self._deadline
        if deadline is None or now < deadline or self._state is not State.OPEN:
            return None
        code, reason = self._deadline_close
        self.close(code, reason)
        return Close(code, truncate_reason(reason))

    def close(self, code: int, reason: str | None = None) -> None:
        """Close after the frames already queued have been written.

        Before the accept this refuses the handshake: nothing queued goes out and
        no close frame is needed (the adapter denies the handshake). Closing a
        closing or closed session does nothing.

        Args:
            code: The close code.
            reason: A short reason, cut to 123 UTF-8 bytes.
        """
        if self.closed:
            return
        refusing = self._state is State.HANDSHAKE
        self._set_closing(code, reason)
        if refusing:
            self._drop_queue()
        else:
            self._emit_close_last()

    def abort(self, code: int, reason: str | None = None) -> None:
        """Close now: drop whatever is queued and emit a :class:`Close` action.

        Aborting a session that is already aborting or closed does nothing; an
        abort during a graceful close overrides it (the first close code stays).

        Args:
            code: The close code sent.
            reason: A short reason, cut to 123 UTF-8 bytes.
        """
        if self._state is State.CLOSED or self._aborted:
            return
        self._aborted = True
        self._set_closing(code, reason)
        self._drop_queue()
        self._close_emitted = True
        if self._actions is None:
            self._actions = []
        self._actions.append(Close(code, truncate_reason(reason)))

    def fail(self) -> None:
        """An unexpected error in the adapter: abort with ``INTERNAL_ERROR`` (1011).

        The reason never carries the error's text.
        """
        self.abort(CloseCode.INTERNAL_ERROR, "internal error")

    def peer_closed(self, code: int) -> None:
        """The peer closed the connection, or it was lost: nothing more goes out.

        Args:
            code: The close code the peer sent (1006 for a lost connection).
        """
        if self.close_code is None:
            self.close_code = code
        self._state = State.CLOSED
        self._drop_queue()

    def finished(self) -> None:
        """The adapter is done with the connection, whatever was still in flight."""
        self._state = State.CLOSED
        self._drop_queue()

    # -- outputs ---------------------------------------------------------------

    def next_frame(self) -> Outbound | None:
        """The writer's next step, in queue order; ``None`` when nothing is due.

        Taking a frame releases its share of the limits, and taking the close
        frame ends the session (``CLOSED``).
        """
        queue = self._queue
        if self._state is State.HANDSHAKE or not queue:
            return None
        item = queue.popleft()
        if not queue:
            self._queue = None
        if isinstance(item, Close):
            self._state = State.CLOSED
        else:
            self._queued_bytes -= item.size
        return item

    def next_sends(self, max_bytes: int) -> list[Send]:
        """The data frames at the head of the queue, up to ``max_bytes`` in all.

        At least one if the head is a data frame; none if it is the close frame
        or nothing is due. A writer that can write several frames at once takes
        them together (one write for all of them); the close frame stays for
        :meth:`next_frame`.
        """
        queue = self._queue
        if self._state is State.HANDSHAKE or not queue:
            return []
        taken: list[Send] = []
        size = 0
        while queue:
            head = queue[0]
            if isinstance(head, Close) or (taken and size + head.size > max_bytes):
                break
            queue.popleft()
            taken.append(head)
            size += head.size
        if not queue:
            self._queue = None
        self._queued_bytes -= size
        return taken

    def may_write_now(self) -> bool:
        """Whether a frame offered now may skip the queue: open, and nothing waits.

        The writer's socket must also be able to take it (the adapter knows).
        """
        return self._state is State.OPEN and not self._queue

    def actions(self) -> list[Action]:
        """Take what must be done at once (a :class:`Close` from an abort)."""
        actions, self._actions = self._actions, None
        return [] if actions is None else actions

    # -- internals -------------------------------------------------------------

    def _refuse(self, now: float) -> RateLimited:
        assert self._flood is not None  # set together with the budget
        if self._flood.take(now):
            return RateLimited()
        self.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
        return RateLimited(closing=True)

    def _set_closing(self, code: int, reason: str | None) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = truncate_reason(reason)
        self._state = State.CLOSING

    def _would_overflow(self, size: int) -> bool:
        return (
            self.backlog >= self.limits.max_messages
            or self._queued_bytes + size > self.limits.max_bytes
        )

    def _emit_close_last(self) -> None:
        self._close_emitted = True
        self._queued().append(Close(self.close_code or CloseCode.NORMAL, self.close_reason))

    def _queued(self) -> deque[Outbound]:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        return queue

    def _drop_queue(self) -> None:
        self._early = None
        self._queue = None
        self._queued_bytes = 0

    def __repr__(self) -> str:
        return f"<Session {self._state.value} backlog={self.backlog}>"
