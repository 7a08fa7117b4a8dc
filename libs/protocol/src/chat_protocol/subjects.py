"""NATS subjects of the chat: room traffic flows on ``chat.<room>``.

Chat room names (:data:`chat_protocol.names.RoomName`) are lower-case letters,
digits, ``_`` and ``-``, so a room name is its own subject token: no room name can
produce a wildcard (``*``, ``>``) or an extra token (``.``). This is the same subject
falcon_pachinko's NATS backend uses for the room (its token encoding maps such
names to themselves); the two are tested to agree.
"""

from __future__ import annotations

from typing import Final

from .names import check_room_name

__all__ = ["PREFIX", "room"]

#: First token of every chat subject.
PREFIX: Final = "chat"


def room(name: str) -> str:
    """The subject carrying the traffic of room ``name``.

    Raises:
        InvalidRoomName: ``name`` is not a valid room name (it is re-checked here,
            the one place subjects are built).
    """
    return f"{PREFIX}.{check_room_name(name)}"
