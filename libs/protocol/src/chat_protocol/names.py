"""Value types shared by every message: room names and user names.

Constraints live in the types (msgspec ``Meta``), so a decoder rejects bad values
and the rest of the code can rely on them.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from msgspec import Meta

from .errors import InvalidRoomName, InvalidUserName

__all__ = [
    "ROOM_NAME_PATTERN",
    "USER_NAME_PATTERN",
    "RoomName",
    "UserName",
    "check_room_name",
    "check_user_name",
]

#: Lower-case letters, digits, ``_`` and ``-``; 1-64 characters; no leading ``_``/``-``.
#: Dots, ``*``, ``>``, whitespace and CR/LF cannot occur, so a room name is safe in
#: a NATS subject, a URL path segment and a log line.
ROOM_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,63}\Z"

#: Letters (any script), digits and ``_``, then also spaces, ``.``, ``'`` and ``-``;
#: 1-32 characters. No control characters, no leading space.
USER_NAME_PATTERN: Final = r"^\w[\w .'-]{0,31}\Z"

RoomName = Annotated[str, Meta(pattern=ROOM_NAME_PATTERN, max_length=64)]
UserName = Annotated[str, Meta(pattern=USER_NAME_PATTERN, max_length=32)]

_room_re: Final = re.compile(ROOM_NAME_PATTERN)
_user_re: Final = re.compile(USER_NAME_PATTERN)


def check_room_name(name: str) -> str:
    """Return ``name`` if it is a valid room name.

    Raises:
        InvalidRoomName: It is not.
    """
    # fullmatch: "$" alone would accept a trailing newline.
    if not isinstance(name, str) or _room_re.fullmatch(name) is None:
        raise InvalidRoomName(
            "room names are 1-64 of a-z, 0-9, '_' and '-', not starting with '_' or '-'"
        )
    return name


def check_user_name(name: str) -> str:
    """Return ``name`` if it is a valid user name.

    Raises:
        InvalidUserName: It is not.
    """
    if not isinstance(name, str) or _user_re.fullmatch(name) is None:
        raise InvalidUserName("user names are 1-32 letters, digits, spaces and . ' - _")
    return name
