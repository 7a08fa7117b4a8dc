"""The uvicorn WebSocket protocol that lends the library its sockets.

``uvicorn.run(app, ws=WebSocketProtocol)`` (or ``--ws
falcon_pachinko.uvicorn_ws:WebSocketProtocol``) runs uvicorn's
``websockets-sansio`` protocol with one addition: each accepted connection's
ASGI scope carries a :class:`~falcon_pachinko.wire.FrameSink` under
:data:`~falcon_pachinko.wire.EXTENSION`. Room traffic is then written straight
to the transport, framed once per message for every recipient (see
:mod:`falcon_pachinko.wire`). Everything else — the handshake, ``accept``,
denial responses, close, ping/pong, reading — is uvicorn's, unchanged; any other
ASGI server runs the library through plain ASGI.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from .wire import EXTENSION

__all__ = ["WebSocketProtocol"]


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, with a frame sink in the scope."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:  # an upgrade: the ASGI task starts after this returns
            scope["extensions"][EXTENSION] = _Sink(self)


class _Sink:
    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketProtocol) -> None:
        self._protocol = protocol

    def writable(self) -> bool:
        p = self._protocol
        return (
            p.handshake_complete
            and p.initial_response is None
            and not p.close_sent
            and not p.disconnected
            and p.conn.state is State.OPEN
            and p.writable.is_set()
            and not p.transport.is_closing()
        )

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)

    async def drained(self) -> None:
        await self._protocol.writable.wait()
