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

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import falcon
import falcon.asgi
import falcon.errors

__all__ = ["deny", "refuse"]

_EXTENSION: Final = "websocket.http.response"


async def deny(
    scope: Mapping[str, Any],
    send: Callable[[dict[str, Any]], Awaitable[None]],
    status: int,
    retry_after_s: int | None = None,
    body: bytes | None = None,
) -> bool:
    """Answer an unaccepted WebSocket with an HTTP ``status``, in raw ASGI.

    For code below Falcon (an ASGI wrapper); :func:`refuse` is the Falcon form.

    Args:
        scope: The connection's ASGI scope.
        send: Its ASGI ``send``.
        status: The HTTP status to answer with.
        retry_after_s: Sent as ``Retry-After`` when given.
        body: The response body; the status line's phrase when ``None``.

    Returns:
        ``False`` when the server lacks the denial extension: nothing was sent,
        and the caller closes instead (which the server answers with 403).
    """
    if _EXTENSION not in (scope.get("extensions") or {}):
        return False
    payload = body if body is not None else falcon.code_to_http_status(status).encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": payload})
    return True


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
    if (
        status == 403
        or not ws.unaccepted
        or not await deny(req.scope, ws._asgi_send, status, retry_after_s)
    ):
        await ws.close()
        return
    # NOTE: Falcon has no public API for this extension. It closes a WebSocket
    # that is still open when the responder returns, and the server rejects a
    # close after a complete response: record that this one is finished.
    ws._state = falcon.asgi.ws._WebSocketState.CLOSED
