"""Who may join which room: the room policy hook and a pattern matcher.

A resource decides in ``on_connect`` whether its connection may join the room
it asks for; the library gives that decision a name, :class:`RoomPolicy`, so an
application can plug in its own (a database lookup, a claim in a token, a
tenant rule) and keep the resource code the same.

:class:`RoomPatterns` is the policy most applications need: a set of exact room
names and prefix patterns (``team-*``). It is pure (no I/O, no clock) and
matching is exact string comparison, so its answer depends only on the name:

* an exact entry ``general`` allows only ``general``;
* a pattern ``team-*`` allows every name that starts with ``team-``
  (``team-`` itself included), and nothing else;
* ``*`` alone allows every room;
* a ``*`` anywhere but at the end is refused when the patterns are parsed, so
  an entry never means more than it says.

:data:`ALLOW_ALL` allows every room: the policy of a connection whose
credentials carry no room restriction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol, runtime_checkable

import msgspec

from .subjects import MAX_ROOM_NAME_CHARS

__all__ = [
    "ALLOW_ALL",
    "MAX_ROOM_PATTERNS",
    "AllowAll",
    "RoomPatterns",
    "RoomPolicy",
]

#: Most entries a :class:`RoomPatterns` accepts. A policy usually comes from a
#: token, which an anonymous client sends; this bounds the matching work per
#: handshake (each entry is compared once).
MAX_ROOM_PATTERNS: Final = 256

_WILDCARD: Final = "*"


@runtime_checkable
class RoomPolicy(Protocol):
    """Decides whether a connection may join a room."""

    def allows(self, room: str) -> bool:
        """Tell whether ``room`` may be joined.

        Args:
            room: The room name, as the client asked for it.

        Returns:
            ``True`` if the room may be joined. Never raises for any string.
        """
        ...


class AllowAll:
    """The policy that allows every room."""

    def allows(self, room: str) -> bool:
        return True

    def __repr__(self) -> str:
        return "ALLOW_ALL"


#: Every room may be joined.
ALLOW_ALL: Final = AllowAll()


class RoomPatterns(msgspec.Struct, frozen=True):
    """Exact room names and ``prefix*`` patterns; build it with :meth:`parse`.

    Attributes:
        exact: Names allowed as they are.
        prefixes: Prefixes whose every extension is allowed (``team-`` for
            ``team-*``; the empty prefix for ``*``).
    """

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[object]) -> RoomPatterns:
        """Read a list of exact names and ``prefix*`` patterns.

        Args:
            entries: The entries, e.g. a token's ``rooms`` claim.

        Returns:
            The patterns. No entries at all allow no room.

        Raises:
            ValueError: An entry is not a string, is empty or longer than a room
                name can be, has a ``*`` anywhere but at its end, or there are
                more than :data:`MAX_ROOM_PATTERNS` entries.
        """
        if isinstance(entries, str | bytes):
            raise ValueError("room patterns are a list of strings, not one string")
        exact: set[str] = set()
        prefixes: set[str] = set()
        for count, entry in enumerate(entries, start=1):
            if count > MAX_ROOM_PATTERNS:
                raise ValueError(f"at most {MAX_ROOM_PATTERNS} room patterns")
            _check_entry(entry)
            assert isinstance(entry, str)
            if entry.endswith(_WILDCARD):
                prefixes.add(entry[:-1])
            else:
                exact.add(entry)
        return cls(exact=frozenset(exact), prefixes=tuple(sorted(prefixes)))

    def allows(self, room: str) -> bool:
        """``True`` if ``room`` is an exact entry or starts with a pattern's prefix."""
        return room in self.exact or any(room.startswith(p) for p in self.prefixes)


def _check_entry(entry: object) -> None:
    if not isinstance(entry, str):
        raise ValueError("a room pattern is a string")
    if not entry:
        raise ValueError("a room pattern is not empty")
    if len(entry) > MAX_ROOM_NAME_CHARS + 1:
        raise ValueError(f"a room pattern has at most {MAX_ROOM_NAME_CHARS + 1} characters")
    if _WILDCARD in entry[:-1]:
        raise ValueError("'*' may only end a room pattern ('team-*')")
