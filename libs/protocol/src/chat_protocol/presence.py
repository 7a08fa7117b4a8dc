"""The chat's presence rule, as a hook for whoever decides presence.

falcon_pachinko reports first-in/last-out changes per (room, user); the chat
announces each one to its room: ``serverUserJoined`` to everyone but the arriving
connection, ``serverUserLeft`` to everyone. The gateway installs this hook on its
own connection manager when it runs alone (memory backend); in a cluster the
rooms service installs it on the membership directory, so each change is
announced exactly once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .messages import presence_announcement

__all__ = ["PresenceEvent", "Publish", "presence_announcer"]


class PresenceEvent(Protocol):
    """What the hook reads of a change (``falcon_pachinko.presence.PresenceChange``)."""

    @property
    def room(self) -> str: ...

    @property
    def identity(self) -> str: ...

    @property
    def present(self) -> bool: ...

    @property
    def connection_id(self) -> str: ...


#: ``publish(room, message, exclude=connection_id_or_None)``; what it returns
#: (whether it was sent, say) the hook returns.
Publish = Callable[..., Awaitable[Any]]


def presence_announcer(publish: Publish) -> Callable[[PresenceEvent], Awaitable[Any]]:
    """A presence hook that announces each change into its room through ``publish``."""

    async def announce(change: PresenceEvent) -> Any:
        message = presence_announcement(change.identity, change.present)
        exclude = change.connection_id if change.present else None
        return await publish(change.room, message, exclude=exclude)

    return announce
