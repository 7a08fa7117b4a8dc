"""``WebSocketResource``: one instance per connection, with rooms and typed dispatch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
import structlog

from .close_codes import CloseCode
from .dispatch import HandlerSpec, build_registry
from .history import Appended, HistoryBatch
from .replay import render_default

if TYPE_CHECKING:
    import falcon.asgi

    from .connection import Connection, WebSocketLike
    from .manager import WebSocketConnectionManager

__all__ = ["WebSocketResource"]

log = structlog.get_logger(__name__)


class WebSocketResource:
    """Base class of WebSocket resources.

    The library creates one instance per connection, passing the extra arguments
    given to ``app.add_websocket_route`` to the constructor. Then:

    1. :meth:`on_connect` runs before the handshake is accepted; returning
       ``False`` rejects it with HTTP 403.
    2. Each received frame goes to the ``@handles_message`` handler of its
       ``type``, or to :meth:`on_unhandled` / :meth:`on_invalid_message`, or,
       when it is over the connection's message budget, to
       :meth:`on_rate_limited` (never to a handler). Frames from one connection
       are handled one at a time, in order.
    3. :meth:`on_disconnect` runs exactly once when the connection ends, whoever
       closed it. The connection then leaves every room it is still in.

    Attributes:
        schema: Optional msgspec tagged union (``tag_field="type"``) of whole
            messages; handlers for its tags receive the decoded message struct.
    """

    schema: ClassVar[Any] = None
    _pachinko_handlers: ClassVar[dict[str, HandlerSpec]] = {}

    _pachinko_conn: Connection
    _pachinko_manager: WebSocketConnectionManager

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._pachinko_handlers = build_registry(cls)

    # -- hooks ---------------------------------------------------------------

    if TYPE_CHECKING:
        # Subclasses name the URI template fields they take (``room_name: str``),
        # which no fixed signature here could allow; type checkers see a callable.
        on_connect: Callable[..., Awaitable[bool]]
    else:

        async def on_connect(
            self, req: falcon.asgi.Request, ws: WebSocketLike, **params: Any
        ) -> bool:
            """Decide whether to accept the connection. Accepts by default.

            URI template fields arrive as keyword arguments. Messages sent through
            ``ws`` here reach the client first, right after the accept.
            """
            return True

    async def on_disconnect(self, ws: WebSocketLike, close_code: int) -> None:
        """Called exactly once when the connection ends."""

    async def on_unhandled(self, ws: WebSocketLike, message: str | bytes) -> None:
        """Receive a frame that is not JSON, has no string ``type``, or has no handler."""

    async def on_invalid_message(
        self,
        ws: WebSocketLike,
        message_type: str,
        error: msgspec.ValidationError,
        message: str | bytes,
    ) -> None:
        """Receive a message of a handled type whose payload failed validation.

        The default passes the raw frame to :meth:`on_unhandled`.
        """
        await self.on_unhandled(ws, message)

    async def on_rate_limited(self, ws: WebSocketLike, message: str | bytes) -> None:
        """Receive a frame refused for being over the connection's message budget.

        The frame was not decoded and no handler saw it. The connection may be
        closing already: for the refusal that found it flooding (it is then
        closed with ``POLICY_VIOLATION``, 1008), sends here do nothing. The
        default does nothing.
        """

    async def on_handler_error(
        self, ws: WebSocketLike, message_type: str, error: Exception
    ) -> None:
        """Called after a handler raised (the exception is already logged).

        The connection stays open. The default does nothing more.
        """

    def history_message(self, batch: HistoryBatch) -> object:
        """The message that carries one batch of a durable room's history.

        Called when this connection catches up (a join with ``history`` or
        ``since``) and by :meth:`send_history`. The default is the library's
        ``{"type": "history", "room", "messages", "complete", "resumed"}``,
        ``messages`` holding the stamped messages as they are received live.
        Return any JSON-encodable object, or encoded JSON text.
        """
        return render_default(batch)

    # -- connection and rooms ------------------------------------------------

    @property
    def connection_id(self) -> str:
        """Cluster-unique id of this resource's connection."""
        return self._pachinko_conn.id

    @property
    def ws(self) -> WebSocketLike:
        """This resource's connection."""
        return self._pachinko_conn

    @property
    def connection_manager(self) -> WebSocketConnectionManager:
        """The manager this resource's connection is registered with."""
        return self._pachinko_manager

    def close_after(
        self,
        seconds: float | None,
        code: int = CloseCode.CREDENTIALS_EXPIRED,
        reason: str | None = None,
    ) -> None:
        """Close this connection ``seconds`` from now, e.g. when its token expires.

        Usable in :meth:`on_connect` (before the accept) and later. One timer per
        connection; a later call replaces the deadline, ``None`` removes it. A
        deadline that passes during the handshake closes the connection right
        after the accept, so the client still receives ``code``.

        Args:
            seconds: Time left, in seconds; ``None`` for no deadline.
            code: The close code; ``CREDENTIALS_EXPIRED`` (4002) by default.
            reason: A short reason for the close frame.
        """
        self._pachinko_conn.close_after(seconds, code, reason)

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection is a member of."""
        return self._pachinko_manager.rooms_of(self._pachinko_conn)

    def set_presence(self, presence: str | None) -> None:
        """Label this connection (with a user name, say) in membership reports.

        Call it before joining rooms so that every report carries the label.
        """
        self._pachinko_manager.set_presence(self._pachinko_conn, presence)

    async def join_room(self, room: str, *, history: int = 0, since: int | None = None) -> None:
        """Join ``room``; its traffic reaches this connection once this returns.

        For a durable room, ask to catch up: ``history`` recent messages on a
        fresh join, or every message after ``since`` (the last ``seq`` the client
        saw) on a resume. The history is sent as :meth:`history_message` frames
        after the frames :meth:`on_connect` sends, then live messages follow with
        no gap and no duplicate.

        Raises:
            RoomLimitExceeded: The connection is in ``max_rooms`` rooms already.
            HistoryUnavailable: ``history``/``since`` on a backend without history.
        """
        await self._pachinko_manager.join_room(
            self._pachinko_conn, room, history=history, since=since, render=self.history_message
        )

    async def send_history(self, room: str, *, before: int | None = None, limit: int = 50) -> None:
        """Send this connection one page of ``room``'s history (scroll-back).

        The newest ``limit`` stored messages before ``before`` (the oldest ``seq``
        the client has), as one :meth:`history_message` frame; those this
        connection was excluded from are left out, as in its join history.

        Raises:
            BackendError: The store could not be read.
            HistoryUnavailable: The backend keeps no history.
        """
        page = await self._pachinko_manager.history(room, before=before, limit=limit)
        mine = self._pachinko_conn.id
        messages = [m for m in page.messages if m.exclude != mine]  # as on join
        batch = HistoryBatch(room=room, messages=messages, complete=not page.more)
        await self._pachinko_conn.send_media(self.history_message(batch))

    async def leave_room(self, room: str) -> None:
        """Leave ``room``. Leaving a room this connection is not in does nothing."""
        await self._pachinko_manager.leave_room(self._pachinko_conn, room)

    async def broadcast_to_room(
        self,
        room: str,
        message: object,
        exclude_self: bool = False,
        *,
        persist: bool = False,
        key: str | None = None,
    ) -> Appended | None:
        """Send ``message`` to every member of ``room``, in every process.

        Args:
            room: The room name. This connection need not be a member.
            message: A JSON-encodable object, or ``str``/``bytes`` of encoded JSON.
            exclude_self: Skip this connection (and only this one).
            persist: Store it in the room's history before anyone receives it
                (see :meth:`WebSocketConnectionManager.broadcast_to_room`).
            key: With ``persist``, an idempotency key (a client's message id). A
                resend with a key already stored is neither stored nor delivered
                again; this connection is sent the original instead, unless it
                has it already (:meth:`WebSocketConnectionManager.resend_original`),
                so the client learns that its message was stored.

        Returns:
            With ``persist``, where it was stored; ``None`` otherwise.
        """
        conn = self._pachinko_conn
        exclude = conn.id if exclude_self else None
        manager = self._pachinko_manager
        appended = await manager.broadcast_to_room(
            room, message, exclude=exclude, persist=persist, key=key
        )
        if appended is not None and appended.duplicate and not exclude_self:
            await manager.resend_original(conn, room, appended)
        return appended
