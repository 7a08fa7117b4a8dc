"""NATS subject names: every subject the NATS backend and the directory use.

Room traffic flows on ``<prefix>.<room-token>``. The token is an injective,
NATS-safe encoding of the room name:

* a name of ASCII letters, digits, ``_`` and ``-`` that starts with a letter or
  digit is its own token (``general`` -> ``chat.general``);
* any other name becomes ``_`` followed by the unpadded, lower-case base32 of its
  UTF-8 bytes (``a.b`` -> ``chat._mexge``).

Plain tokens never start with ``_`` and encoded ones always do, and base32 is
injective, so no two rooms share a subject; neither form can contain ``.``,
``*``, ``>`` or whitespace, so no room name can produce a wildcard or an extra
token. Control subjects have three or more tokens (``<prefix>._dir.events``), and so
do the subjects durable messages are stored on (``<prefix>._h.<room-token>``, see
:mod:`falcon_pachinko.backends.nats.history`), so neither can ever equal a room
subject, which has exactly two.
"""

from __future__ import annotations

import base64
import re
from typing import Final

__all__ = ["MAX_ROOM_NAME_CHARS", "Subjects", "check_prefix", "room_token"]

#: Longest room name the library accepts. Keeps every subject well inside the
#: NATS control-line limit (4 KiB) once encoded.
MAX_ROOM_NAME_CHARS: Final = 256

_PLAIN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_PREFIX: Final = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def check_room(room: str) -> str:
    """Return ``room`` if the library accepts it as a room name.

    Raises:
        ValueError: It is not a non-empty string of at most 256 characters.
    """
    if not isinstance(room, str) or not room:
        raise ValueError("a room name is a non-empty string")
    if len(room) > MAX_ROOM_NAME_CHARS:
        raise ValueError(f"a room name has at most {MAX_ROOM_NAME_CHARS} characters")
    return room


def room_token(room: str) -> str:
    """The single NATS subject token that stands for ``room``.

    Raises:
        ValueError: ``room`` is not an acceptable room name.
    """
    check_room(room)
    if _PLAIN.fullmatch(room):
        return room
    encoded = base64.b32encode(room.encode("utf-8", "surrogatepass")).decode("ascii")
    return "_" + encoded.rstrip("=").lower()


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a literal NATS subject (no wildcards, no empty tokens).

    Raises:
        ValueError: It is not.
    """
    if not isinstance(prefix, str) or _PREFIX.fullmatch(prefix) is None:
        raise ValueError("a subject prefix is dot-separated tokens of letters, digits, '_' and '-'")
    return prefix


class Subjects:
    """Every subject under one prefix.

    Args:
        prefix: The first token(s) of every subject, ``"chat"`` by default.
    """

    def __init__(self, prefix: str = "chat") -> None:
        self.prefix: Final = check_prefix(prefix)
        control = f"{prefix}._dir"
        #: Membership reports from nodes to the directory (one ordered stream).
        self.events: Final = f"{control}.events"
        #: Directory queries (request/reply).
        self.query_rooms: Final = f"{control}.rooms"
        self.query_members: Final = f"{control}.members"
        self.query_presence: Final = f"{control}.presence"
        self.query_connections: Final = f"{control}.connections"
        #: The directory asks every node to re-send its membership.
        self.sync_all: Final = f"{control}.sync"
        #: Messages for one connection: ``<direct>.<node>`` reaches the node holding it.
        self.direct: Final = f"{control}.direct"
        #: What the active directory reported (its standbys owe it no more).
        self.announced: Final = f"{control}.announced"
        #: Kicks: every node subscribes and closes its matching connections.
        self.kick: Final = f"{control}.kick"
        #: Every subject durable messages are stored on (the history stream's subjects).
        self.stored_all: Final = f"{prefix}._h.*"

    def room(self, room: str) -> str:
        """The subject carrying ``room``'s traffic."""
        return f"{self.prefix}.{room_token(room)}"

    def stored(self, room: str) -> str:
        """The subject ``room``'s durable messages are stored on (then republished
        on :meth:`room`)."""
        return f"{self.prefix}._h.{room_token(room)}"

    def direct_node(self, node_id: str) -> str:
        """The subject on which one node receives messages for its connections."""
        return f"{self.direct}.{node_id}"

    def probe(self, node_id: str) -> str:
        """The subject on which one node hears its own self-probes."""
        return f"{self.prefix}._probe.{node_id}"

    def sync_node(self, node_id: str) -> str:
        """The subject on which the directory asks one node to re-send its membership."""
        return f"{self.sync_all}.{node_id}"
