"""The interfaces a connection manager's backend is made of.

A :class:`~falcon_pachinko.WebSocketConnectionManager` owns the sockets of one
process. Everything that crosses the process boundary goes through its
:class:`Backend`, which pairs two concerns, each behind its own interface:

* a :class:`Broker` carries **room traffic**. The manager subscribes to a room
  when its first local member joins and unsubscribes when its last local member
  leaves, so a process holds one subscription per room, never one per
  connection. ``publish`` sends an already encoded message to every process
  subscribed to the room; each hands the same bytes to its local members through
  :meth:`BrokerSink.deliver`. Direct messages reach one connection wherever it is.
* a :class:`Presence` keeps **membership and presence**: the manager reports
  joins and leaves, asks for the cluster-wide view (rooms, members, who is
  present), and learns of first-in/last-out changes where this process is the
  one that decides them (:meth:`PresenceSink.presence_changed`).

* a :class:`History` (optional) keeps **durable rooms**: it stores a message
  before it is delivered, gives it a position (see :mod:`falcon_pachinko.history`),
  delivers it live to every process subscribed to the room with that position,
  and answers reads of the stored messages (recent ones, older ones, those after
  a client's cursor).

The in-process backend implements all three inside one process; the NATS backend
implements them across processes (history on JetStream) without any change to
resource code.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from typing import Protocol

import msgspec

from ..history import Appended, Page, Position, Stored
from ..presence import PresenceChange

__all__ = [
    "Backend",
    "BackendSink",
    "Broker",
    "BrokerSink",
    "History",
    "Member",
    "Presence",
    "PresenceSink",
]


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """One connection's membership of a room, as backends report it.

    Attributes:
        connection_id: The cluster-unique id of the connection.
        presence: Optional application-defined label of who is behind the
            connection (a user name, say); ``None`` when the application sets none.
    """

    connection_id: str
    presence: str | None = None


class BrokerSink(Protocol):
    """What a broker calls to hand traffic to the local connection manager."""

    def deliver(
        self,
        room: str,
        data: bytes,
        exclude: str | None,
        position: Position | None = None,
        prev: int | None = None,
    ) -> None:
        """Hand one encoded room message to every local member of ``room``.

        Args:
            room: The room the message was published to.
            data: The UTF-8 JSON text of the message, exactly as it was published.
            exclude: The id of a connection that must not receive it, if any.
            position: Where it was stored, for a durable message; ``None`` for
                live-only traffic.
            prev: For a durable message, the ``seq`` of the room's previous stored
                message (0 if none), when the backend can tell; a loss detector.
        """

    def deliver_to_connection(self, connection_id: str, data: bytes) -> bool:
        """Hand one encoded message to one local connection.

        Returns:
            ``True`` if the connection is local and open, ``False`` otherwise.
        """

    def kick_local(self, identity: str, room: str | None, reason: str) -> int:
        """Close every local connection of ``identity`` (in ``room`` only, if given).

        Returns:
            How many connections were closed.
        """


class PresenceSink(Protocol):
    """What a presence backend calls to tell the manager about presence changes."""

    async def presence_changed(self, change: PresenceChange) -> None:
        """An identity arrived in a room or left it (where this process decides)."""


class BackendSink(BrokerSink, PresenceSink, Protocol):
    """The connection manager, as its backend sees it."""


class Broker(ABC):
    """Carries room traffic between connection managers.

    Its methods are called from the event loop the manager runs on.
    """

    @abstractmethod
    async def start(self, sink: BrokerSink) -> None:
        """Start delivering traffic to ``sink``."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop delivering traffic and release every subscription. Idempotent."""

    @abstractmethod
    async def subscribe(self, room: str) -> None:
        """Start receiving the traffic of ``room``; returns once it is in effect."""

    @abstractmethod
    async def unsubscribe(self, room: str) -> None:
        """Stop receiving the traffic of ``room``."""

    @abstractmethod
    async def publish(self, room: str, data: bytes, *, exclude: str | None = None) -> None:
        """Send an encoded message to every member of ``room`` in every process.

        Messages published by one caller reach each member in the order published.

        Args:
            room: The room name.
            data: The UTF-8 JSON text of the message.
            exclude: The id of one connection that must not receive it.

        Raises:
            BackendError: The message could not be sent.
        """

    @abstractmethod
    async def send_to_connection(self, connection_id: str, data: bytes) -> bool:
        """Send an encoded message to a connection held by another process.

        Returns:
            ``True`` if the process holding the connection queued it for its client.
        """

    def new_connection_id(self) -> str:
        """A cluster-unique id for a new local connection."""
        return uuid.uuid4().hex

    async def kick(self, identity: str, room: str | None, reason: str) -> None:
        """Ask every *other* process to close the connections of ``identity``.

        The manager has closed its own already. Within one process there are no
        others, so this does nothing by default.

        Raises:
            BackendError: The kick could not be sent.
        """
        return None


class Presence(ABC):
    """Keeps room membership and presence, for one process or a whole cluster."""

    @abstractmethod
    async def start(self, sink: PresenceSink) -> None:
        """Start reporting; presence changes decided here go to ``sink``."""

    @abstractmethod
    async def stop(self) -> None:
        """Say goodbye and release every resource. Idempotent."""

    @abstractmethod
    def begin_shutdown(self) -> None:
        """The process is shutting down and its clients will reconnect elsewhere.

        From now on, departures are not reported one by one: the goodbye sent by
        :meth:`stop` holds this process's users present for the grace period, so
        users who reconnect to another process meanwhile do not flap.
        """

    @abstractmethod
    async def member_joined(self, room: str, member: Member) -> None:
        """Record that a local connection joined ``room``."""

    @abstractmethod
    async def member_left(self, room: str, member: Member) -> None:
        """Record that a local connection left ``room``."""

    @abstractmethod
    async def rooms_by_prefix(self, prefix: str) -> list[str]:
        """List every room, cluster-wide, whose name starts with ``prefix``.

        Only rooms that have at least one member are listed, sorted by name.
        """

    @abstractmethod
    async def room_members(self, room: str) -> list[Member]:
        """List every member of ``room``, cluster-wide."""

    @abstractmethod
    async def presence(self, room: str) -> list[str]:
        """Who is present in ``room``, cluster-wide: identities, sorted, each once."""

    @abstractmethod
    async def connections_of(self, identity: str) -> int:
        """How many connections labelled ``identity`` are in a room, cluster-wide."""


class History(ABC):
    """Keeps durable rooms: stores messages, then delivers them live with a position.

    Retention discards the oldest messages first (by count per room, by age, by
    total size), so when the message at a client's cursor is still stored, every
    later message of its room is too: that is how a resume knows it is complete
    (:meth:`has`).
    """

    async def start(self) -> None:
        """Prepare the store (create or update it). Idempotent.

        Raises:
            BackendError: The store cannot be reached or prepared.
        """
        return None

    async def stop(self) -> None:
        """Release what the store holds. Idempotent."""
        return None

    @abstractmethod
    async def append(
        self, room: str, data: bytes, *, exclude: str | None = None, key: str | None = None
    ) -> Appended:
        """Store a message, then deliver it to every process subscribed to ``room``.

        Returns once the message is stored (with NATS: acknowledged by JetStream),
        so a caller that tells its client "sent" after this has told the truth.

        Args:
            room: The room name.
            data: The UTF-8 JSON text of the message (a JSON object, to be stamped).
            exclude: The id of one connection that must not receive it live.
            key: An idempotency key: a second append with the same key in the same
                room within the dedup window stores and delivers nothing and
                returns the first one's position with ``duplicate=True``.

        Raises:
            BackendError: The message was not stored (it may be stored later only
                if it was handed over before the failure; a retry with the same
                ``key`` is then a duplicate, never a second message).
        """

    @abstractmethod
    async def latest(self, room: str, *, limit: int, before: int | None = None) -> Page:
        """The last ``limit`` stored messages of ``room`` (before ``before``), oldest first.

        ``Page.more`` tells whether older ones exist.

        Raises:
            BackendError: The store could not be read.
        """

    @abstractmethod
    async def after(self, room: str, after: int, *, limit: int) -> Page:
        """The first ``limit`` stored messages of ``room`` with ``seq > after``, oldest first.

        ``Page.more`` tells whether newer ones exist (at the time of the read).

        Raises:
            BackendError: The store could not be read.
        """

    async def get(self, room: str, seq: int) -> Stored | None:
        """The stored message of ``room`` at ``seq``; ``None`` if there is none.

        Raises:
            BackendError: The store could not be read.
        """
        page = await self.after(room, seq - 1, limit=1)
        found = page.messages[0] if page.messages else None
        return found if found is not None and found.position.seq == seq else None

    async def last_seq(self, room: str) -> int | None:
        """The ``seq`` of the newest stored message of ``room``; ``None`` if none.

        Raises:
            BackendError: The store could not be read.
        """
        page = await self.latest(room, limit=1)
        return page.messages[-1].position.seq if page.messages else None

    @abstractmethod
    async def has(self, room: str, seq: int) -> bool:
        """Whether the message at ``seq`` is stored, and is a message of ``room``.

        Raises:
            BackendError: The store could not be read.
        """


class Backend:
    """A broker, a presence and (optionally) a history that serve one manager together.

    Args:
        broker: Carries room traffic.
        presence: Keeps membership and presence.
        history: Keeps durable rooms; ``None`` when the backend keeps no history
            (then ``persist=True`` broadcasts and history reads raise
            :class:`~falcon_pachinko.errors.HistoryUnavailable`).
    """

    def __init__(self, broker: Broker, presence: Presence, history: History | None = None) -> None:
        self.broker = broker
        self.presence = presence
        self.history = history

    async def start(self, sink: BackendSink) -> None:
        """Start the broker, then presence, then history.

        Raises:
            BackendError: The backend cannot start.
        """
        await self.broker.start(sink)
        await self.presence.start(sink)
        if self.history is not None:
            await self.history.start()

    async def stop(self) -> None:
        """Stop presence (its goodbye goes out first), then the broker. Idempotent."""
        await self.presence.stop()
        await self.broker.stop()
        if self.history is not None:
            await self.history.stop()

    def begin_shutdown(self) -> None:
        """See :meth:`Presence.begin_shutdown`."""
        self.presence.begin_shutdown()
