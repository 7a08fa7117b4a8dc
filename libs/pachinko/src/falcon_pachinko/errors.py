"""Exceptions raised by falcon_pachinko.

::

    PachinkoError(Exception)
    ├── HandlerConfigurationError(PachinkoError, TypeError)
    │       a resource class declares its handlers wrongly (raised at class creation)
    ├── ConnectionClosed(PachinkoError, falcon.WebSocketDisconnected)
    │       an operation needs an open connection and this one is closed
    │       (catching Falcon's WebSocketDisconnected or ConnectionError catches it)
    ├── RoomLimitExceeded(PachinkoError, ValueError)
    │       a connection asked to join one room more than ``max_rooms`` allows;
    │       nothing changed (it is still in exactly the rooms it was in)
    ├── BackendError(PachinkoError, RuntimeError)
    │       the backend could not carry out an operation
    └── HistoryUnavailable(PachinkoError, LookupError)
            a durable-room operation on a backend that keeps no history
            (a programmer error: configure the backend's history)

Errors a peer causes (bad JSON, unknown message types, invalid payloads) are never
raised into user code: they are routed to the resource's hooks.
"""

from __future__ import annotations

import falcon.errors

__all__ = [
    "BackendError",
    "ConnectionClosed",
    "HandlerConfigurationError",
    "HistoryUnavailable",
    "PachinkoError",
    "RoomLimitExceeded",
]


class PachinkoError(Exception):
    """Root of every exception falcon_pachinko raises."""


class HandlerConfigurationError(PachinkoError, TypeError):
    """A ``WebSocketResource`` subclass declares its message handlers wrongly."""


class ConnectionClosed(PachinkoError, falcon.errors.WebSocketDisconnected):
    """The connection is closed, so the operation cannot be carried out.

    Attributes:
        code: The close code of the connection.
    """

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.args = (f"connection closed with code {code}",)


class RoomLimitExceeded(PachinkoError, ValueError):
    """Joining one more room would exceed the connection's ``max_rooms``.

    Nothing changed: the connection is still in exactly the rooms it was in.

    Attributes:
        limit: The connection's ``max_rooms``.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"a connection may be in at most {limit} rooms")
        self.limit = limit


class BackendError(PachinkoError, RuntimeError):
    """The connection manager's backend failed to carry out an operation."""


class HistoryUnavailable(PachinkoError, LookupError):
    """A durable-room operation was asked of a backend that keeps no history."""

    def __init__(self) -> None:
        super().__init__("this backend keeps no history: configure one to use durable rooms")
