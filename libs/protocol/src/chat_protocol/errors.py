"""Errors of the chat protocol.

::

    ChatError(Exception)
    ├── InvalidRoomName(ChatError, ValueError)
    └── InvalidUserName(ChatError, ValueError)
"""

from __future__ import annotations

__all__ = ["ChatError", "InvalidRoomName", "InvalidUserName"]


class ChatError(Exception):
    """Root of the chat's exceptions."""


class InvalidRoomName(ChatError, ValueError):
    """A room name does not match :data:`chat_protocol.names.ROOM_NAME_PATTERN`."""


class InvalidUserName(ChatError, ValueError):
    """A user name does not match :data:`chat_protocol.names.USER_NAME_PATTERN`."""
