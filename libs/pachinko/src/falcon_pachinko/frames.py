"""What a session takes and gives: frames out, decisions about frames in.

These are plain values, shared by :mod:`falcon_pachinko.session` (which decides)
and :mod:`falcon_pachinko.connection` (which performs). Nothing here does I/O or
raises on a peer's input.

* :class:`Send` and :class:`Close` make up the outbound stream
  (:meth:`Session.next_frame <falcon_pachinko.session.Session.next_frame>`);
  a :class:`Close` is also the one kind of immediate action.
* :class:`Admission` answers a handler's direct send.
* What a received frame is for: a :mod:`falcon_pachinko.dispatch` decision,
  :class:`RateLimited` (over the message budget: not dispatched) or
  :class:`Drop` (the session is no longer open).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .dispatch import Decision
from .wire import server_frame

__all__ = [
    "Action",
    "Admission",
    "Close",
    "Drop",
    "Inbound",
    "Outbound",
    "RateLimited",
    "Send",
    "truncate_reason",
    "utf8_size",
]


class Admission(enum.Enum):
    """The answer to :meth:`Session.send`."""

    #: The frame is queued.
    QUEUED = "queued"
    #: No room now; wait until the writer takes a frame, then try again.
    FULL = "full"
    #: The session is closing or closed (perhaps by this very send); drop the frame.
    CLOSED = "closed"


# -- outputs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write one frame.

    Attributes:
        payload: The frame's content. A text frame may hold UTF-8 ``bytes`` (as
            they arrive from a backend) or ``str``.
        size: The bytes the frame holds on the wire (UTF-8 for text).
        text: A text frame (``True``) or a binary one.
    """

    payload: str | bytes
    size: int
    text: bool = True
    _wire: bytes | None = field(default=None, compare=False, repr=False)
    _text: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of_text(cls, text: str) -> Send:
        """A text frame from a ``str``."""
        return cls(text, utf8_size(text))

    @classmethod
    def of_utf8(cls, data: bytes) -> Send:
        """A text frame from UTF-8 bytes (not checked here; the writer decodes them)."""
        return cls(data, len(data))

    @classmethod
    def of_checked_utf8(cls, data: bytes) -> Send | None:
        """A text frame from bytes checked to be UTF-8 (``None`` if they are not).

        Checked once, for a frame offered to many: its text is kept for writers
        that need ``str``, its bytes for those that write the wire.
        """
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return None
        return cls(data, len(data), True, None, text)

    @classmethod
    def of_binary(cls, data: bytes) -> Send:
        """A binary frame."""
        return cls(data, len(data), text=False)

    def as_text(self) -> str:
        """The payload of a text frame as ``str`` (decoded once, then kept)."""
        payload = self.payload
        if isinstance(payload, str):
            return payload
        text = self._text
        if text is None:
            text = payload.decode()
            object.__setattr__(self, "_text", text)
        return text

    @property
    def wire(self) -> bytes:
        """The frame's bytes on the wire, built on first use and kept.

        A broadcast offers one ``Send`` to every recipient, so the frame is
        encoded once per message, whatever the number of recipients.
        """
        cached = self._wire
        if cached is None:
            payload = self.payload
            data = payload.encode() if isinstance(payload, str) else payload
            cached = server_frame(data, text=self.text)
            object.__setattr__(self, "_wire", cached)
        return cached


@dataclass(frozen=True, slots=True)
class Close:
    """Send a close frame with ``code`` and ``reason``, then nothing more.

    From :meth:`Session.next_frame` it comes after the frames queued before it;
    from :meth:`Session.actions` it must happen now, abandoning any write in flight.
    Before the accept, closing the socket refuses the handshake (HTTP 403).
    """

    code: int
    reason: str | None = None


#: What the writer takes from :meth:`Session.next_frame`.
Outbound = Send | Close
#: What :meth:`Session.actions` returns.
Action = Close


@dataclass(frozen=True, slots=True)
class Drop:
    """Do nothing with this frame: the session is no longer open."""


@dataclass(frozen=True, slots=True)
class RateLimited:
    """The frame is over the connection's message budget: it is not dispatched.

    The adapter tells the resource (``on_rate_limited``) and reads nothing more
    into it. See :class:`falcon_pachinko.session.Session` for when refusals close.

    Attributes:
        closing: This refusal was one too many: the session is closing with
            ``POLICY_VIOLATION`` (1008).
    """

    closing: bool = False


#: What :meth:`Session.receive` decides.
Inbound = Decision | RateLimited | Drop


# -- helpers ---------------------------------------------------------------------


def utf8_size(text: str) -> int:
    """Bytes ``text`` takes encoded as UTF-8.

    Args:
        text: Any string.

    Returns:
        Its UTF-8 length, without encoding it when it is ASCII (checking that is
        O(1) in CPython).
    """
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def truncate_reason(reason: str | None) -> str | None:
    """Cut a close reason to 123 UTF-8 bytes, on a character boundary.

    RFC 6455 5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
    """
    if reason is None:
        return None
    return reason.encode()[:123].decode(errors="ignore")
