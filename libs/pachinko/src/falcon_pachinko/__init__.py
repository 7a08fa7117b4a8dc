"""falcon_pachinko: WebSockets for Falcon with the ergonomics of Falcon's HTTP API.

::

    app = falcon.asgi.App()
    falcon_pachinko.install(app)
    app.add_websocket_route("/ws/chat/{room_name}", ChatRoomResource)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backends import Backend, BackendSink, Broker, History, InProcessBackend, Member, Presence
from .close_codes import CloseCode, ReceivedCloseCode, is_reconnectable
from .connection import Connection, ConnectionLimits, WebSocketLike
from .dispatch import handles_message
from .errors import (
    BackendError,
    ConnectionClosed,
    HandlerConfigurationError,
    HistoryUnavailable,
    PachinkoError,
    RoomLimitExceeded,
)
from .extension import PachinkoApp, install
from .history import Appended, HistoryBatch, Page, Position, Stored
from .manager import WebSocketConnectionManager
from .presence import PresenceChange, PresenceHandler
from .resource import WebSocketResource
from .workers import WorkerController, worker

if TYPE_CHECKING:
    from .backends.nats import NatsBackend
    from .directory import Directory

__all__ = [
    "Appended",
    "Backend",
    "BackendError",
    "BackendSink",
    "Broker",
    "CloseCode",
    "Connection",
    "ConnectionClosed",
    "ConnectionLimits",
    "Directory",
    "HandlerConfigurationError",
    "History",
    "HistoryBatch",
    "HistoryUnavailable",
    "InProcessBackend",
    "Member",
    "NatsBackend",
    "Page",
    "PachinkoApp",
    "PachinkoError",
    "Position",
    "Presence",
    "PresenceChange",
    "PresenceHandler",
    "ReceivedCloseCode",
    "RoomLimitExceeded",
    "Stored",
    "WebSocketConnectionManager",
    "WebSocketLike",
    "WebSocketResource",
    "WorkerController",
    "handles_message",
    "install",
    "is_reconnectable",
    "worker",
]


def __getattr__(name: str) -> Any:
    # The NATS pieces need the ``nats`` extra; import them only when asked for.
    if name == "NatsBackend":
        from .backends.nats import NatsBackend

        return NatsBackend
    if name == "Directory":
        from .directory import Directory

        return Directory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
