"""The rooms service's chat rules for presence: announcements and typing on departure.

The membership directory (falcon_pachinko) decides presence for the whole
cluster and reports each first-in/last-out change once. This module turns those
reports into chat traffic:

* every change is announced into its room with the chat's one presence rule
  (:func:`chat_protocol.presence.presence_announcer`);
* connections lost with their gateway (crash, TTL) may have been typing, and their
  gateway can no longer say they stopped: :func:`typists_to_stop` names the
  ``(room, user)`` pairs to announce as not typing, each once.
"""

from __future__ import annotations

from collections.abc import Iterable

from falcon_pachinko.membership import Lost

__all__ = ["typists_to_stop"]


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
