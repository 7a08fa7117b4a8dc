"""The gateway's Falcon middleware that is not authentication: the ``Origin`` guard.

It runs first, before any token is looked at, so a foreign page's handshake
costs no signature check and no key fetch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import falcon
import structlog

from .origin import OriginPolicy, is_allowed, own_origin

__all__ = ["OriginMiddleware"]

log = structlog.get_logger(__name__)

_MAX_LOGGED_CHARS: Final = 100


class OriginMiddleware:
    """Refuses (HTTP 403) WebSocket handshakes whose ``Origin`` is not allowed.

    Args:
        policy: The allowed origins (``CHAT_ALLOWED_ORIGINS``).
        on_rejected: Called with the reason of each refusal (a metric).
    """

    def __init__(
        self, policy: OriginPolicy, on_rejected: Callable[[str], None] | None = None
    ) -> None:
        self._policy = policy
        self._on_rejected = on_rejected

    async def process_request_ws(self, req: Any, ws: Any) -> None:
        origin = req.get_header("Origin")
        if origin is None:
            return  # not a browser page: nothing ambient rides on it
        if is_allowed(origin, self._policy, own_origin(req.scheme, req.get_header("Host"))):
            return
        # The origin is not a secret and tells an operator what to allow; it is
        # cut short, and neither the token nor the query string is logged.
        log.info("origin.rejected", reason="origin_not_allowed", origin=origin[:_MAX_LOGGED_CHARS])
        if self._on_rejected is not None:
            self._on_rejected("origin_not_allowed")
        # NOTE(gateway): Falcon closes an unaccepted WebSocket when a middleware
        # raises; the server answers such a handshake with HTTP 403.
        raise falcon.HTTPForbidden()
