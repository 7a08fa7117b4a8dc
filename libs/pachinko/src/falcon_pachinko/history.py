"""Durable rooms: what a stored message is, and the rules of a room's live feed.

A message broadcast with ``persist=True`` is stored by the backend's
:class:`~falcon_pachinko.backends.base.History` before anyone receives it, and
gets a :class:`Position`:

* ``seq``: its place in the room, strictly increasing within a room (gaps
  allowed: with JetStream it is the stream sequence, shared by every room);
* ``id``: a string unique to the message (a resend with the same idempotency key
  within the dedup window is the *same* message, with the same id);
* ``ts``: the time it was stored, in integer milliseconds since the Unix epoch.

Clients see positions because every durable message is **stamped** once per
process on its way out: :func:`stamp_top_level` adds ``"id"``, ``"seq"`` and
``"ts"`` to the message's JSON object; an application that wants them elsewhere
(the chat puts them in ``payload``) gives the manager its own :data:`Stamp`.

A room's live feed in one process is watched by a :class:`RoomFeed`: each live
durable message names the previous position of its room (``prev``); when that is
not the last one this process delivered, messages were lost on the way (the
process was cut off from the broker for a while) and the room's local members
must resume from their cursors. See :class:`RoomFeed` for the rule.

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final

import msgspec

__all__ = [
    "Appended",
    "Feed",
    "HistoryBatch",
    "Page",
    "Position",
    "RoomFeed",
    "Stamp",
    "Stored",
    "stamp_top_level",
]


class Position(msgspec.Struct, frozen=True):
    """Where a stored message sits in its room (see the module docstring)."""

    seq: int
    id: str
    ts: int


class Stored(msgspec.Struct, frozen=True):
    """One stored message.

    Attributes:
        position: Its position in the room.
        data: Its JSON text: as the producer encoded it when a backend returns it,
            stamped with its position when the manager does.
        exclude: The connection that was excluded from its live delivery, if any.
    """

    position: Position
    data: bytes
    exclude: str | None = None


class Page(msgspec.Struct, frozen=True):
    """Stored messages of one room, oldest first.

    Attributes:
        messages: The messages.
        more: Whether further messages exist beyond this page in the direction
            read: older ones for a backward read, newer ones for a forward read.
    """

    messages: list[Stored]
    more: bool


class Appended(msgspec.Struct, frozen=True):
    """What storing one message did.

    Attributes:
        position: The message's position.
        duplicate: The idempotency key had been used within the dedup window: the
            message was stored before, at ``position``, and was neither stored nor
            delivered again.
    """

    position: Position
    duplicate: bool = False


class HistoryBatch(msgspec.Struct, frozen=True, kw_only=True):
    """One frame's worth of history for one connection, as a resource renders it.

    Attributes:
        room: The room.
        messages: Stamped messages, oldest first.
        complete: ``False`` when older messages than the first of these exist.
        resumed: On the last batch of a resume, whether every message after the
            client's cursor was still stored (``True``) or some had expired and
            the recent history was sent instead (``False``); ``None`` otherwise.
        last: Whether this is the last batch of this reply.
    """

    room: str
    messages: list[Stored]
    complete: bool
    resumed: bool | None = None
    last: bool = True


#: Adds a position to a message's JSON text: ``stamp(data, position) -> data``.
Stamp = Callable[[bytes, Position], bytes]


def stamp_top_level(data: bytes, position: Position) -> bytes:
    """Add ``"id"``, ``"seq"`` and ``"ts"`` to a JSON object (the default stamp).

    Text that is not a JSON object is returned unchanged.
    """
    body = data.rstrip()
    if not body.endswith(b"}"):
        return data
    fields = _ENCODER.encode(position)[1:-1]  # '"seq":..,"id":..,"ts":..'
    inner = body[:-1].rstrip()
    separator = b"" if inner.endswith(b"{") else b","
    return inner + separator + fields + b"}"


_ENCODER: Final = msgspec.json.Encoder()


class Feed(enum.Enum):
    """What one live durable message means for a room's members in this process."""

    #: The next message: deliver it.
    DELIVER = "deliver"
    #: Delivered already (or older than what was): drop it.
    DUPLICATE = "duplicate"
    #: Messages were lost before this one: the members must resume.
    GAP = "gap"


class RoomFeed:
    """Watches one room's live durable messages in one process for loss.

    Rule: a live message at ``seq`` whose room's previous message was at ``prev``
    follows what this process delivered when ``prev`` is the last ``seq``
    delivered; anything at or before the last one is a duplicate; a ``prev``
    beyond it means messages were published that this process never received
    (the broker cut it off for a while, a core-NATS hop lost them), and the
    feed reports a :attr:`Feed.GAP` once and starts over from that message.

    Before any live message, the members' starting points stand in for the last
    one delivered (:meth:`joined`: the newest message a member's history sent,
    or the store's newest when a member joined without history; the lowest of
    them, so that no member's loss hides behind another's history). A feed that
    knows neither accepts any message as its start. Messages with no ``prev`` (a
    backend that cannot tell) are delivered.
    """

    __slots__ = ("last", "start")

    def __init__(self, last: int | None = None) -> None:
        #: The position of the last message delivered live, if any.
        self.last = last
        #: Before any live message: the lowest position from which every member
        #: has every message (``None``: unknown).
        self.start: int | None = None

    @property
    def base(self) -> int | None:
        """The position the next live message must follow (``None``: unknown)."""
        return self.start if self.last is None else self.last

    def joined(self, seq: int) -> None:
        """A member has every message of the room up to ``seq``, and is live after it."""
        if self.last is None:
            self.start = seq if self.start is None else min(self.start, seq)

    def behind(self, stored: int | None) -> bool:
        """Whether the store holds a newer message than the members are known to have.

        Asked after the link to the broker came back: the messages stored
        meanwhile were republished while this process could not receive them.
        (A message stored a moment ago and still on its way counts as well, as
        does a room whose start is unknown: the cost of asking is a needless
        resume, never a miss.)
        """
        if stored is None:
            return False
        base = self.base
        return base is None or stored > base

    def live(self, seq: int, prev: int | None) -> Feed:
        """Classify a live message at ``seq`` whose room's previous one was ``prev``."""
        base = self.base
        if self.last is not None and seq <= self.last:
            return Feed.DUPLICATE
        self.last = seq
        if base is None or prev is None or prev <= base:
            return Feed.DELIVER
        return Feed.GAP
