"""The interface a connection manager's backend implements.

A :class:`~falcon_pachinko.WebSocketConnectionManager` owns the sockets of one
process. Everything that crosses the process boundary goes through its backend:

* **Room traffic.** The manager subscribes to a room when its first local member
  joins and unsubscribes when its last local member leaves, so a process holds one
  subscription per room, never one per connection. ``publish`` sends an already
  encoded message to every process subscribed to the room; each of them hands the
  same bytes to its local members through :meth:`BackendSink.deliver`.
* **Membership.** The manager reports joins and leaves, and asks the backend for
  the cluster-wide view (``rooms_by_prefix``, ``room_members``).

The in-process backend implements all of this inside one process; a networked
backend (NATS) implements it across processes without any change to resource code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

import msgspec

from ..presence import PresenceChange

__all__ = ["Backend", "BackendSink", "Member"]


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """One connection's membership of a room, as backends report it.

    Attributes:
        connection_id: The cluster-unique id of the connection.
        presence: Optional application-defined label of who is behind the
            connection (a user name, say); ``None`` when the application sets none.
    """

    connection_id: str
    presence: str | None = None


class BackendSink(Protocol):
    """What a backend calls to hand traffic to the local connection manager."""

    def deliver(self, room: str, data: bytes, exclude: str | None) -> None:
        """Hand one encoded room message to every local member of ``room``.

        Args:
            room: The room the message was published to.
            data: The UTF-8 JSON text of the message, exactly as it was published.
            exclude: The id of a connection that must not receive it, if any.
        """

    def deliver_to_connection(self, connection_id: str, data: bytes) -> bool:
        """Hand one encoded message to one local connection.

        Returns:
            ``True`` if the connection is local and open, ``False`` otherwise.
        """

    async def presence_changed(self, change: PresenceChange) -> None:
        """An identity arrived in a room or left it (backends that decide presence)."""


class Backend(ABC):
    """Carries room traffic and membership between connection managers.

    A backend instance serves one connection manager. Its methods are called from
    the event loop the manager runs on.
    """

    @abstractmethod
    async def start(self, sink: BackendSink) -> None:
        """Connect and start delivering traffic to ``sink``.

        Raises:
            BackendError: The backend cannot start.
        """

    @abstractmethod
    async def stop(self) -> None:
        """Stop delivering traffic and release every resource. Idempotent."""

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
        """

    @abstractmethod
    async def send_to_connection(self, connection_id: str, data: bytes) -> bool:
        """Send an encoded message to a connection that is not local.

        Returns:
            ``True`` if the message was handed to a process holding the connection.
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
    def begin_shutdown(self) -> None:
        """The process is shutting down and its clients will reconnect elsewhere.

        From now on, departures are not reported one by one: the goodbye sent by
        :meth:`stop` holds this process's users present for the grace period, so
        users who reconnect to another process meanwhile do not flap.
        """
