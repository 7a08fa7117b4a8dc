"""The rooms service's chat rules for presence: announcements and typing on departure.

The membership directory (falcon_pachinko) decides presence for the whole
cluster and reports each first-in/last-out change once. This module turns those
reports into chat traffic:

* every change is announced into its room with the chat's one presence rule
  (:func:`chat_protocol.presence.presence_announcer`);
* connections lost with their gateway (crash, TTL) may have been typing, and their
  gateway can no longer say they stopped: :func:`typists_to_stop` names the
  ``(room, user)`` pairs to announce as not typing, each once.

:class:`PresenceRules` is the adapter: the directory calls it, it publishes.
A publish that fails (NATS away) is logged and dropped: presence is soft state,
and the next change says the truth again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import structlog

from chat_protocol.messages import ServerMessage, encode, typing_stopped
from chat_protocol.presence import presence_announcer
from falcon_pachinko import BackendError
from falcon_pachinko.presence import PresenceChange
from falcon_pachinko.registry import Lost

from .metrics import Metrics

__all__ = ["PresenceRules", "RoomPublisher", "typists_to_stop"]

log = structlog.get_logger(__name__)


def typists_to_stop(lost: Iterable[Lost]) -> list[tuple[str, str]]:
    """The ``(room, user)`` pairs of ``lost`` members, each once, in first-seen order.

    Only members of expired gateways count: a gateway that said goodbye stopped
    its typists itself. Anonymous connections (no presence label) name nobody.
    """
    seen: dict[tuple[str, str], None] = {}
    for item in lost:
        user = item.member.presence
        if user is not None and item.expired:
            seen.setdefault((item.room, user), None)
    return list(seen)


class RoomPublisher(Protocol):
    """The part of a broker this service uses."""

    async def publish(self, room: str, data: bytes, *, exclude: str | None = None) -> None: ...


class PresenceRules:
    """The chat's reactions to the directory's reports, published into the rooms.

    Args:
        publisher: Publishes room traffic (a broker that is never started: this
            service holds no sockets).
        metrics: Counts what was announced.
    """

    def __init__(self, publisher: RoomPublisher, metrics: Metrics) -> None:
        self._publisher = publisher
        self._metrics = metrics
        self._announce = presence_announcer(self._publish)

    async def on_presence(self, change: PresenceChange) -> None:
        """Announce a user's first arrival or last departure in a room."""
        if not await self._announce(change):
            return  # not sent (NATS away): not counted as announced
        if change.present:
            self._metrics.arrivals_announced.inc()
        else:
            self._metrics.departures_announced.inc()

    async def on_lost(self, lost: list[Lost]) -> None:
        """Connections vanished with their gateway: none of them is typing any more."""
        self._metrics.members_lost.inc(len(lost))
        for room, user in typists_to_stop(lost):
            await self._publish(room, typing_stopped(user))

    async def _publish(
        self, room: str, message: ServerMessage, *, exclude: str | None = None
    ) -> bool:
        try:
            await self._publisher.publish(room, encode(message), exclude=exclude)
        except BackendError:
            log.warning("rooms.announcement_not_sent")
            return False
        return True
