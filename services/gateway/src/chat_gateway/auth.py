"""Authentication: who is connecting. Sets ``req.context.user`` or leaves it unset.

The resource rejects a connection without a user at the handshake (HTTP 403).
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog

from chat_protocol import InvalidUserName, check_user_name

__all__ = ["DevAuthMiddleware", "User"]

log = structlog.get_logger(__name__)


class User(msgspec.Struct, frozen=True):
    """An authenticated user."""

    name: str


class DevAuthMiddleware:
    """Development mode: trusts ``?user=Name``. Never use it where others can connect."""

    def _authenticate(self, req: Any) -> None:
        name = req.get_param("user")
        if name is None:
            return
        try:
            req.context.user = User(check_user_name(name))
        except InvalidUserName:
            log.info("auth.rejected", reason="invalid user name")

    async def process_request(self, req: Any, resp: Any) -> None:
        self._authenticate(req)

    async def process_request_ws(self, req: Any, ws: Any) -> None:
        self._authenticate(req)
