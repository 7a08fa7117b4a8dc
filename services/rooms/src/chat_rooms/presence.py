"""User-level presence: who to announce as left when connections are lost.

A user may have several connections in one room (tabs, devices). When a gateway
dies, the chat says "left" once per user and room, and only if none of that user's
connections remain in the room on another gateway.
"""

from __future__ import annotations

from collections.abc import Iterable

from falcon_pachinko.membership import Lost, Registry

__all__ = ["departures"]


def departures(lost: Iterable[Lost], registry: Registry) -> list[tuple[str, str]]:
    """The ``(room, user)`` pairs to announce as left, each once, in first-seen order.

    Args:
        lost: Members already removed from ``registry``.
        registry: The directory's registry, after the removal.
    """
    seen: set[tuple[str, str]] = set()
    result: list[tuple[str, str]] = []
    for item in lost:
        user = item.member.presence
        if user is None:
            continue  # an anonymous connection has no one to announce
        key = (item.room, user)
        if key in seen:
            continue
        seen.add(key)
        if registry.presence_count(item.room, user) == 0:
            result.append(key)
    return result
