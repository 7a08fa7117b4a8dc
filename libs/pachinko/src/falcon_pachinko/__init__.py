"""falcon_pachinko: WebSockets for Falcon with the ergonomics of Falcon's HTTP API.

::

    app = falcon.asgi.App()
    falcon_pachinko.install(app)
    app.add_websocket_route("/ws/chat/{room_name}", ChatRoomResource)
"""

from __future__ import annotations

from .backends import Backend, BackendSink, InProcessBackend, Member
from .close_codes import CloseCode, is_reconnectable
from .connection import Connection, ConnectionLimits, WebSocketLike
from .dispatch import handles_message
from .errors import BackendError, ConnectionClosed, HandlerConfigurationError, PachinkoError
from .extension import PachinkoApp, install
from .manager import WebSocketConnectionManager
from .resource import WebSocketResource
from .workers import WorkerController, worker

__all__ = [
    "Backend",
    "BackendError",
    "BackendSink",
    "CloseCode",
    "Connection",
    "ConnectionClosed",
    "ConnectionLimits",
    "HandlerConfigurationError",
    "InProcessBackend",
    "Member",
    "PachinkoApp",
    "PachinkoError",
    "WebSocketConnectionManager",
    "WebSocketLike",
    "WebSocketResource",
    "WorkerController",
    "handles_message",
    "install",
    "is_reconnectable",
    "worker",
]
