"""``ChatRoomResource``: the seed's chat room, with the protocol's typed messages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Final

import falcon.asgi
import msgspec
import structlog

from chat_protocol import InvalidRoomName, check_room_name
from chat_protocol.close_codes import CloseCode
from chat_protocol.history import history_frame, idempotency_key
from chat_protocol.messages import (
    ClientFetchHistory,
    ClientMessage,
    ClientSendMessage,
    ClientStartTyping,
    ClientStopTyping,
    ErrorCode,
    ErrorPayload,
    NewMessagePayload,
    PresencePayload,
    ServerError,
    ServerNewMessage,
    ServerPresence,
    ServerSystemMessage,
    ServerUserTyping,
    TextPayload,
    TypingPayload,
    typing_stopped,
)
from falcon_pachinko import (
    BackendError,
    HistoryBatch,
    WebSocketLike,
    WebSocketResource,
    handles_message,
)
from falcon_pachinko.permissions import ALLOW_ALL, RoomPolicy

from .auth import User
from .metrics import Metrics

__all__ = ["ChatRoomResource", "Durability"]

log = structlog.get_logger(__name__)

_UNRECOGNIZED: Final = ServerError(
    payload=ErrorPayload(error="Unrecognized message format or type.", code=ErrorCode.UNRECOGNIZED)
)
_INTERNAL: Final = ServerError(
    payload=ErrorPayload(error="The server could not handle that message.", code=ErrorCode.INTERNAL)
)
_UNAVAILABLE: Final = ServerError(
    payload=ErrorPayload(
        error="The chat is temporarily unavailable; the message was not sent. Try again.",
        code=ErrorCode.UNAVAILABLE,
    )
)
_RATE_LIMITED: Final = ServerError(
    payload=ErrorPayload(
        error="Too many messages; this one was not sent. Slow down.",
        code=ErrorCode.RATE_LIMITED,
    )
)
_NO_HISTORY: Final = ServerError(
    payload=ErrorPayload(error="This server keeps no history.", code=ErrorCode.UNAVAILABLE)
)
_MAX_DETAIL: Final = 200
#: Seconds a client is asked to wait when the token's keys cannot be fetched.
_KEYS_RETRY_AFTER_S: Final = 5


class Durability(msgspec.Struct, frozen=True, kw_only=True):
    """How the chat uses durable rooms (``CHAT_HISTORY_*``).

    Attributes:
        on_join: Messages a joiner is sent as history (0: none).
        page_max: Most messages one ``clientFetchHistory`` answer carries.
    """

    on_join: int = 50
    page_max: int = 100


class ChatRoomResource(WebSocketResource):
    """One chat participant in one room (``/ws/chat/{room_name}``).

    Presence is user-level and is not announced here: the connection is labelled
    with the user's name and joins the room, and whoever decides presence (the
    rooms service, or the gateway's own presence hook on the memory backend)
    announces the user's first arrival and last departure. The joiner gets the
    welcome, then the roster (``serverPresence``), then, in a durable room, the
    history (``serverHistory``): the last ``on_join`` messages, or, when the
    client reconnects with ``?since=<seq>``, every message after that position.

    Chat messages are durable (``durability`` given): each is stored before anyone
    receives it, carries ``id``/``seq``/``ts``, and echoes the sender's
    ``clientMsgId``; a resend with the same ``clientMsgId`` within the dedup window
    is not a second message. When a message cannot be stored the sender gets
    ``serverError`` ``unavailable``: nothing is claimed that did not happen.

    Typing expires: a typist who goes silent for ``typing_ttl_s``, sends a
    message, or disconnects is announced as no longer typing.

    Limits (enforced by the library, configured by the gateway): every message,
    typing notifications included, counts against one budget; a message over it
    gets ``serverError`` ``rate_limited`` and reaches nobody. A connection ends
    with 4002 (``CREDENTIALS_EXPIRED``) when its token's ``exp`` passes: the
    deadline is the ``exp`` itself, without the leeway granted at the handshake,
    so a token accepted within the leeway is closed right after the welcome.

    Args:
        metrics: Where rejections and errors are counted.
        typing_ttl_s: A silent typist stops typing after this long.
        wall_clock: Unix seconds, to turn a token's ``exp`` into time left.
        max_connections_per_user: Connections one user may hold across the cluster
            (0: no cap). Counted by the membership directory before joining; if it
            does not answer the connection is let in (chat works without it).
            Concurrent handshakes of one user can each see the count before the
            others joined, so it may be exceeded by that many.
        durability: Store chat messages and send history; ``None``: live only.
    """

    schema = ClientMessage

    user: User
    room_name: str

    def __init__(
        self,
        metrics: Metrics | None = None,
        typing_ttl_s: float = 6.0,
        *,
        wall_clock: Callable[[], float] = time.time,
        max_connections_per_user: int = 0,
        durability: Durability | None = None,
    ) -> None:
        self._metrics = metrics
        self._durability = durability
        self._typing_ttl_s = typing_ttl_s
        self._wall_clock = wall_clock
        self._max_per_user = max_connections_per_user
        self._typing_expiry: asyncio.Task[None] | None = None

    async def on_connect(self, req: falcon.asgi.Request, ws: WebSocketLike, room_name: str) -> bool:
        user = self._identify(req)
        if user is None or not self._may_join(user, room_name):
            return False
        since = self._since(req)
        if await self._over_user_cap(user):
            log.info("chat.rejected", reason="too_many_connections")
            self._reject("too_many_connections")
            raise falcon.HTTPError(falcon.HTTP_429, title="Too many connections for this user")
        self.user = user
        self.room_name = room_name
        if user.expires_at is not None:
            time_left = user.expires_at - self._wall_clock()
            self.close_after(time_left, CloseCode.CREDENTIALS_EXPIRED, "token expired")
        self.set_presence(user.name)
        try:
            await self._join(room_name, since)
        except BackendError:
            # NATS is away: the library answers 503 (retry), not 403 (refused).
            self._reject("unavailable")
            raise
        welcome = f"Welcome {user.name} to room '{room_name}'!"
        await ws.send_media(ServerSystemMessage(payload=TextPayload(text=welcome)))
        await self._send_roster(ws)
        return True

    def _since(self, req: falcon.asgi.Request) -> int | None:
        raw = req.get_param("since")
        if raw is None or self._durability is None:
            return None  # without history there is nothing to resume from
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
            log.info("chat.rejected", reason="invalid_since")
            self._reject("invalid_since")
            raise falcon.HTTPBadRequest(
                title="Invalid since", description="since is the last seq seen: an integer >= 0"
            )
        return int(raw)

    async def _join(self, room_name: str, since: int | None) -> None:
        durability = self._durability
        if durability is None:
            await self.join_room(room_name)
        else:
            await self.join_room(room_name, history=durability.on_join, since=since)

    def history_message(self, batch: HistoryBatch) -> object:
        return history_frame(batch)

    def _identify(self, req: falcon.asgi.Request) -> User | None:
        user = req.context.get("user")
        if isinstance(user, User):
            return user
        if req.context.get("auth_unavailable"):
            # The issuer's keys cannot be fetched: try again later (503).
            self._reject("keys_unavailable")
            raise falcon.HTTPServiceUnavailable(retry_after=_KEYS_RETRY_AFTER_S)
        self._reject("unauthenticated")
        return None

    def _may_join(self, user: User, room_name: str) -> bool:
        try:
            check_room_name(room_name)
        except InvalidRoomName:
            log.info("chat.rejected", reason="invalid_room_name")
            return self._reject("invalid_room_name")
        if not self.room_policy(user).allows(room_name):
            log.info("chat.rejected", reason="room_not_permitted")
            return self._reject("room_not_permitted")
        return True

    async def _over_user_cap(self, user: User) -> bool:
        if self._max_per_user <= 0:
            return False
        try:
            held = await self.connection_manager.connections_of(user.name)
        except BackendError:
            log.warning("chat.user_cap_unchecked")  # the directory is away: let it in
            return False
        return held >= self._max_per_user

    def room_policy(self, user: User) -> RoomPolicy:
        """The rooms ``user`` may join: the token's ``rooms`` claim, or every room."""
        return user.rooms if user.rooms is not None else ALLOW_ALL

    async def _send_roster(self, ws: WebSocketLike) -> None:
        try:
            users = await self.connection_manager.presence(self.room_name)
        except BackendError:
            # The rooms service is away: chat works without the roster, and the
            # arrivals announced from now on still reach this client.
            log.warning("chat.roster_unavailable")
            return
        await ws.send_media(ServerPresence(payload=PresencePayload(users=users)))

    @handles_message("clientSendMessage")
    async def handle_send_message(self, ws: WebSocketLike, message: ClientSendMessage) -> None:
        client_msg_id = message.payload.client_msg_id
        payload = NewMessagePayload(
            user=self.user.name, text=message.payload.text, client_msg_id=client_msg_id
        )
        chat_message = ServerNewMessage(payload=payload)
        if self._durability is None:
            await self.broadcast_to_room(self.room_name, chat_message)
        else:
            # Stored before anyone receives it; a resend of one already stored is
            # not stored again (the sender sees the first in its history or live).
            key = None if client_msg_id is None else idempotency_key(self.user.name, client_msg_id)
            await self.broadcast_to_room(self.room_name, chat_message, persist=True, key=key)
        await self._stop_typing()

    @handles_message("clientFetchHistory")
    async def handle_fetch_history(self, ws: WebSocketLike, message: ClientFetchHistory) -> None:
        durability = self._durability
        if durability is None:
            await self._send_error(ws, _NO_HISTORY)
            return
        limit = min(message.payload.limit, durability.page_max)
        await self.send_history(self.room_name, before=message.payload.before, limit=limit)

    @handles_message("clientStartTyping")
    async def handle_start_typing(self, ws: WebSocketLike, message: ClientStartTyping) -> None:
        payload = TypingPayload(user=self.user.name, is_typing=True)
        await self.broadcast_to_room(
            self.room_name, ServerUserTyping(payload=payload), exclude_self=True
        )
        self._cancel_typing_expiry()
        self._typing_expiry = asyncio.create_task(
            self._expire_typing(), name=f"chat-typing-{self.connection_id}"
        )

    @handles_message("clientStopTyping")
    async def handle_stop_typing(self, ws: WebSocketLike, message: ClientStopTyping) -> None:
        await self._stop_typing(always=True)

    async def _expire_typing(self) -> None:
        await asyncio.sleep(self._typing_ttl_s)
        self._typing_expiry = None
        with contextlib.suppress(BackendError):
            await self._announce_stopped_typing()

    async def _stop_typing(self, *, always: bool = False) -> None:
        # Announced when typing was on; an explicit stop is always passed on.
        if self._cancel_typing_expiry() or always:
            await self._announce_stopped_typing()

    def _cancel_typing_expiry(self) -> bool:
        task, self._typing_expiry = self._typing_expiry, None
        if task is None:
            return False
        task.cancel()
        return True

    async def _announce_stopped_typing(self) -> None:
        await self.broadcast_to_room(
            self.room_name, typing_stopped(self.user.name), exclude_self=True
        )

    async def on_disconnect(self, ws: WebSocketLike, close_code: int) -> None:
        if not hasattr(self, "room_name"):
            return
        try:
            await self._stop_typing()
        except BackendError:
            log.warning("chat.typing_stop_not_announced")
        await self.leave_room(self.room_name)
        log.info("chat.disconnected", close_code=close_code)

    async def on_unhandled(self, ws: WebSocketLike, message: str | bytes) -> None:
        await self._send_error(ws, _UNRECOGNIZED)

    async def on_invalid_message(
        self, ws: WebSocketLike, message_type: str, error: msgspec.ValidationError, message: Any
    ) -> None:
        detail = f"Invalid {message_type} message: {error}"[:_MAX_DETAIL]
        error_message = ServerError(
            payload=ErrorPayload(error=detail, code=ErrorCode.INVALID_PAYLOAD)
        )
        await self._send_error(ws, error_message)

    async def on_rate_limited(self, ws: WebSocketLike, message: str | bytes) -> None:
        await self._send_error(ws, _RATE_LIMITED)

    async def on_handler_error(
        self, ws: WebSocketLike, message_type: str, error: Exception
    ) -> None:
        unavailable = isinstance(error, BackendError)
        await self._send_error(ws, _UNAVAILABLE if unavailable else _INTERNAL)

    def _reject(self, reason: str) -> bool:
        if self._metrics is not None:
            self._metrics.reject(reason)
        return False

    async def _send_error(self, ws: WebSocketLike, message: ServerError) -> None:
        await ws.send_media(message)  # raises if the connection closed meanwhile
        if self._metrics is not None:  # so only errors that went out are counted
            self._metrics.server_errors.labels(message.payload.code).inc()
