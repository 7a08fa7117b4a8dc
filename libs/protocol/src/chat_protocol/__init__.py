"""The chat's message contract, imported by every service."""

from __future__ import annotations

from . import close_codes, messages, names, subjects
from .close_codes import ChatCloseCode, CloseCode
from .errors import ChatError, InvalidRoomName, InvalidUserName
from .names import RoomName, UserName, check_room_name, check_user_name

__all__ = [
    "ChatCloseCode",
    "ChatError",
    "CloseCode",
    "InvalidRoomName",
    "InvalidUserName",
    "RoomName",
    "UserName",
    "check_room_name",
    "check_user_name",
    "close_codes",
    "messages",
    "names",
    "subjects",
]
