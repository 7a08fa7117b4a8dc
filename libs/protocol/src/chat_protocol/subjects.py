"""NATS subjects of the chat: room traffic flows on ``chat.<room>``.

:data:`PREFIX` is the one definition of the chat's subject prefix; every service
hands it to falcon_pachinko (``NatsBackend(subject_prefix=PREFIX)``,
``Subjects(PREFIX)``), whose :meth:`falcon_pachinko.subjects.Subjects.room` is the
one function that builds a room's subject. The chat builds none itself.

Chat room names (:data:`chat_protocol.names.RoomName`) are lower-case letters,
digits, ``_`` and ``-``, so the library's token encoding maps each to itself:
subjects read ``chat.general``, and no room name can produce a wildcard (``*``,
``>``) or an extra token (``.``). A property test checks this for every valid name.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PREFIX"]

#: First token of every chat subject.
PREFIX: Final = "chat"
