"""``GET /api/rooms?prefix=``: the rooms that have members, for the page's room picker.

Rooms come from whoever knows them: with NATS, the membership directory (the
rooms service), which knows every room with a member on any gateway; in one
process, the in-process presence. Both answer through the connection manager
(``get_rooms_by_prefix``, ``presence``), so this module does no bookkeeping of
its own.

The endpoint is guarded like the WebSocket: the ``Origin`` must be allowed (a
request without one is not a page's and is let through), the caller must be
identified (``?user=`` in development mode; a token as ``Authorization: Bearer``
or ``?token=`` in JWT mode), and a token's ``rooms`` claim hides the rooms it
does not permit. The answer::

    {"rooms": [{"name": "general", "users": 3}, ...], "truncated": false}

sorted by name, at most ``max_rooms`` entries (``truncated`` says whether more
matched). ``users`` counts people, not connections.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final

import falcon
import falcon.asgi
import msgspec
import structlog

from falcon_pachinko import BackendError, WebSocketConnectionManager
from falcon_pachinko.permissions import ALLOW_ALL, RoomPolicy

from .auth import User
from .origin import OriginPolicy, is_allowed, own_origin

__all__ = ["MAX_ROOMS", "PREFIX_PATTERN", "RoomEntry", "RoomList", "RoomsResource"]

log = structlog.get_logger(__name__)

#: Most rooms one answer lists: a picker shows a screenful, and every listed
#: room costs one presence question to the directory.
MAX_ROOMS: Final = 50

#: A prefix is the start of a room name (``^[a-z0-9][a-z0-9_-]{0,63}$``), or empty.
PREFIX_PATTERN: Final = r"([a-z0-9][a-z0-9_-]{0,63})?"
_PREFIX: Final = re.compile(PREFIX_PATTERN)

#: Presence questions in flight at once for one answer.
_CONCURRENT_COUNTS: Final = 8
_RETRY_AFTER_S: Final = 5


class RoomEntry(msgspec.Struct, frozen=True):
    """One listed room: its name and how many people are in it."""

    name: str
    users: int


class RoomList(msgspec.Struct, frozen=True):
    """The answer: rooms sorted by name; ``truncated`` when more matched than are listed."""

    rooms: list[RoomEntry]
    truncated: bool = False


_encoder: Final = msgspec.json.Encoder()


class RoomsResource:
    """The Falcon responder of ``GET /api/rooms``.

    Args:
        manager: The gateway's connection manager (rooms and presence, cluster-wide).
        origins: The allowed origins (``CHAT_ALLOWED_ORIGINS``), as the WebSocket uses them.
        max_rooms: Most rooms listed in one answer.
    """

    def __init__(
        self,
        manager: WebSocketConnectionManager,
        origins: OriginPolicy,
        *,
        max_rooms: int = MAX_ROOMS,
    ) -> None:
        self._manager = manager
        self._origins = origins
        self._max_rooms = max_rooms

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self._check_origin(req)
        user = _identify(req)
        prefix = req.get_param("prefix", default="")
        if _PREFIX.fullmatch(prefix) is None:
            raise falcon.HTTPBadRequest(
                title="Invalid prefix",
                description="prefix is the start of a room name: a-z, 0-9, '_' and '-'",
            )
        policy: RoomPolicy = user.rooms if user.rooms is not None else ALLOW_ALL
        try:
            names = [r for r in await self._manager.get_rooms_by_prefix(prefix) if policy.allows(r)]
            listed = await self._count(names[: self._max_rooms])
        except BackendError:
            log.warning("rooms_api.unavailable")
            raise falcon.HTTPServiceUnavailable(retry_after=_RETRY_AFTER_S) from None
        resp.content_type = falcon.MEDIA_JSON
        resp.data = _encoder.encode(RoomList(listed, truncated=len(names) > self._max_rooms))
        resp.set_header("Cache-Control", "no-store")

    def _check_origin(self, req: falcon.asgi.Request) -> None:
        origin = req.get_header("Origin")
        if origin is None:
            return  # not a page's request: nothing ambient rides on it
        if not is_allowed(origin, self._origins, own_origin(req.scheme, req.get_header("Host"))):
            log.info("rooms_api.rejected", reason="origin_not_allowed")
            raise falcon.HTTPForbidden()

    async def _count(self, names: list[str]) -> list[RoomEntry]:
        gate = asyncio.Semaphore(_CONCURRENT_COUNTS)

        async def entry(name: str) -> RoomEntry:
            async with gate:
                return RoomEntry(name, len(await self._manager.presence(name)))

        return list(await asyncio.gather(*(entry(name) for name in names)))


def _identify(req: Any) -> User:
    user = req.context.get("user")
    if isinstance(user, User):
        return user
    if req.context.get("auth_unavailable"):
        raise falcon.HTTPServiceUnavailable(retry_after=_RETRY_AFTER_S)
    # NOTE(gateway): 401 needs a challenge (RFC 9110 §11.6.1); Bearer is the
    # scheme JWT mode reads, and dev mode's ?user= is the same question.
    raise falcon.HTTPUnauthorized(title="Unauthenticated", challenges=["Bearer"])
