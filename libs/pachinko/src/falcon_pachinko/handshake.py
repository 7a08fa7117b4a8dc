"""Refusing a WebSocket handshake with an HTTP status.

Before the accept, a refusal is an HTTP response, not a close code. ASGI offers
two ways: a ``websocket.close`` (the server answers 403, always), or the
``websocket.http.response`` extension, which sends any status (uvicorn supports
it). :func:`refuse` uses the extension when the server offers it, so that a
client can tell "not allowed" (403) from "try again later" (503), and falls back
to the close (403) when it does not.

``on_connect`` refuses by returning ``False`` (403), or by raising a
``falcon.HTTPError`` such as ``falcon.HTTPServiceUnavailable`` (its status).
A :class:`~falcon_pachinko.BackendError` raised while connecting means the
infrastructure is away, not that the client is unwelcome: 503.
"""

from __future__ import annotations

from typing import Any, Final

import falcon
import falcon.asgi
import falcon.errors

__all__ = ["refuse"]

_EXTENSION: Final = "websocket.http.response"


async def refuse(
    req: falcon.asgi.Request, ws: falcon.asgi.WebSocket, status: int, retry_after_s: int | None
) -> None:
    """Answer the handshake with ``status`` (403 when the server cannot send others).

    Args:
        req: The handshake request.
        ws: Falcon's WebSocket, not yet accepted.
        status: The HTTP status to answer with.
        retry_after_s: Sent as ``Retry-After`` when given.
    """
    extensions: dict[str, Any] = req.scope.get("extensions") or {}
    if status == 403 or _EXTENSION not in extensions or not ws.unaccepted:
        await ws.close()
        return
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    body = falcon.code_to_http_status(status).encode()
    await ws._asgi_send(
        {"type": "websocket.http.response.start", "status": status, "headers": headers}
    )
    await ws._asgi_send({"type": "websocket.http.response.body", "body": body})
    # NOTE: Falcon has no public API for this extension. It closes a WebSocket
    # that is still open when the responder returns, and the server rejects a
    # close after a complete response: record that this one is finished.
    ws._state = falcon.asgi.ws._WebSocketState.CLOSED
