"""A chat client on ``websockets``: the async adapter around :class:`RoomState`.

It connects to one room of a gateway, turns every frame into typed events
(:mod:`chat_client.state`), and keeps going across failures by the rules of
:mod:`chat_client.reconnect`: on a reconnectable close it waits (back-off with
jitter), reconnects with ``?since=`` its cursor, and sends every unechoed message
again with its ``clientMsgId``. Connection changes are events too
(:class:`Status`)::

    async with ChatClient("ws://127.0.0.1:8000", "general", user="Alice") as chat:
        await chat.send("hello")
        async for event in chat.events():
            match event:
                case Message(user=user, text=text):
                    print(f"{user}: {text}")
                case Status(state="closed"):
                    break

Failure rules:

* The first connection is the caller's: a refusal or a final close before the
  welcome raises :class:`ChatClosed` from ``__aenter__`` (or from
  :meth:`ChatClient.connected`), a transient one is retried.
* Later, a final close (kicked, a policy violation, a token that expired with no
  ``token`` callable to renew it) ends the client: a ``Status("closed")`` or
  ``Status("token expired")`` event, then :meth:`ChatClient.events` ends; a
  transient one is a ``Status("reconnecting")`` event, a wait, and a reconnect.
* A send while disconnected is kept and goes out after the next welcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, urlencode

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from chat_protocol.close_codes import CloseCode
from chat_protocol.names import check_room_name

from .reconnect import ABNORMAL_CLOSURE, Backoff, Verdict, after_close, after_refusal
from .state import Event, Message, RoomState

__all__ = ["ChatClient", "ChatClosed", "Status", "TokenSource"]

#: A token, or a callable that gets a fresh one (called before every connection).
TokenSource = str | Callable[[], Awaitable[str]]

_END: Final = object()


class Status(msgspec.Struct, frozen=True):
    """The connection changed: ``connected``, ``reconnecting``, ``token expired`` or
    ``closed``; ``code`` is the close code or HTTP status that caused it, if any."""

    state: str
    code: int | None = None
    reason: str = ""
    #: Seconds until the next attempt (``reconnecting`` only).
    retry_in_s: float | None = None


class ChatClosed(Exception):
    """The chat ended this client for good (or never let it in)."""

    def __init__(self, status: Status) -> None:
        super().__init__(f"{status.state} ({status.code}): {status.reason}".rstrip(": "))
        self.status = status


class ChatClient:
    """One room of a chat gateway, across reconnects.

    Args:
        url: The gateway's base URL, ``ws://host:port`` (or ``wss://``).
        room: The room's name (checked as the gateway checks it).
        user: The name to use with the gateway's ``CHAT_AUTH=dev``.
        token: A token (``CHAT_AUTH=jwt``), or an async callable returning a fresh
            one; with a callable, a 4002 (token expired) close reconnects.
        since: Resume from this ``seq`` on the first connection too.
        backoff: The reconnect waits (the default: 0.5 s doubling to 30 s).
        open_timeout_s: Bound on each handshake.
        reconnect: ``False``: the first close ends the client.
    """

    def __init__(
        self,
        url: str,
        room: str,
        *,
        user: str | None = None,
        token: TokenSource | None = None,
        since: int | None = None,
        backoff: Backoff | None = None,
        open_timeout_s: float = 10.0,
        reconnect: bool = True,
    ) -> None:
        if (user is None) == (token is None):
            raise ValueError("give exactly one of user (dev auth) and token")
        self.url = url.rstrip("/")
        self.room = check_room_name(room)
        self.user = user
        self.state = RoomState(since=since)
        self.status = Status("connecting")
        self._token = token
        self._backoff = backoff if backoff is not None else Backoff()
        self._open_timeout_s = open_timeout_s
        self._reconnect = reconnect
        self._events: asyncio.Queue[Event | Status | object] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._welcomed = asyncio.Event()
        self._ended = asyncio.Event()
        self._changed = asyncio.Event()
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> ChatClient:
        self.start()
        await self.connected()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"chat-client-{self.room}")

    async def connected(self) -> None:
        """Wait until a connection is welcomed.

        Raises:
            ChatClosed: The client ended first.
        """
        welcomed = asyncio.ensure_future(self._welcomed.wait())
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({welcomed, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            welcomed.cancel()
            ended.cancel()
        if not self._welcomed.is_set():
            raise ChatClosed(self.status)

    async def close(self) -> None:
        """Close the connection (1000) and stop reconnecting."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await ws.close(CloseCode.NORMAL)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._end(Status("closed", CloseCode.NORMAL, "closed by the client"))

    # -- what the application does ---------------------------------------------------

    async def send(self, text: str, client_msg_id: str | None = None) -> str:
        """Send a chat message; its ``clientMsgId``.

        It is pending until echoed, and sent again after a reconnect (the gateway
        stores it once). While disconnected it waits for the next connection.

        Raises:
            ValueError: The text is empty or too long for the chat.
        """
        client_msg_id, frame = self.state.send(text, client_msg_id)
        await self._write(frame)
        return client_msg_id

    async def fetch_older(self, limit: int = 50) -> None:
        """Ask for ``limit`` messages older than the oldest seen (a ``serverHistory``)."""
        await self._write(self.state.fetch_older(limit))

    async def typing(self, active: bool) -> None:
        """Tell the room this client started (or stopped) typing."""
        await self._write(self.state.typing(active))

    async def events(self) -> AsyncIterator[Event | Status]:
        """Every event, in order, until the client ends (the last is a :class:`Status`)."""
        while True:
            event = await self._events.get()
            if event is _END:
                self._events.put_nowait(_END)  # for any other reader
                return
            assert isinstance(event, msgspec.Struct)
            yield event  # type: ignore[misc]

    async def next_event(self, timeout_s: float) -> Event | Status:
        """The next event, waiting at most ``timeout_s``.

        Raises:
            TimeoutError: Nothing arrived in time.
            ChatClosed: The client ended and every event was read.
        """
        async with asyncio.timeout(timeout_s):
            event = await self._events.get()
        if event is _END:
            self._events.put_nowait(_END)
            raise ChatClosed(self.status)
        return event  # type: ignore[return-value]

    async def drain(self, timeout_s: float) -> None:
        """Wait until every send was echoed.

        Raises:
            TimeoutError: Some are still pending after ``timeout_s``.
            ChatClosed: The client ended with sends pending.
        """
        async with asyncio.timeout(timeout_s):
            while self.state.pending:
                if self._ended.is_set():
                    raise ChatClosed(self.status)
                self._changed.clear()
                await self._changed.wait()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    # -- the connection loop -----------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            status = await self._connect_once()
            if self._closing:
                return
            if status.state != Verdict.RECONNECT or not self._reconnect:
                if status.state == Verdict.RECONNECT:
                    status = Status(Verdict.FINAL, status.code, status.reason)
                self._end(status)
                return
            delay = self._backoff.next_delay(status.retry_in_s)
            self._emit(msgspec.structs.replace(status, retry_in_s=delay))
            await asyncio.sleep(delay)

    async def _connect_once(self) -> Status:
        """One connection, from handshake to close: the :class:`Status` it ended with."""
        try:
            url = await self._ws_url()
            ws = await websockets.connect(
                url, open_timeout=self._open_timeout_s, compression=None, max_queue=None
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            retry = exc.response.headers.get("Retry-After")
            retry_s = float(retry) if retry is not None and retry.isdigit() else None
            body = exc.response.body or b""
            reason = body.decode(errors="replace").strip()[:200]
            return Status(after_refusal(status), status, reason or f"HTTP {status}", retry_s)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            return Status(Verdict.RECONNECT, None, f"cannot connect: {exc}")
        self._ws = ws
        try:
            await self._read(ws)
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
        code = ws.close_code if ws.close_code is not None else ABNORMAL_CLOSURE
        reason = ws.close_reason or ""
        return Status(after_close(code, can_renew_token=callable(self._token)), code, reason)

    async def _read(self, ws: ClientConnection) -> None:
        opened = False
        async for frame in ws:
            if not opened:
                # The first frame is the welcome: the session is open.
                await self._opened(ws)
                opened = True
            for event in self.state.receive(frame):
                self._emit(event)
                if isinstance(event, Message) and event.mine:
                    self._changed.set()

    async def _opened(self, ws: ClientConnection) -> None:
        """Send what is pending again, then say so: sends made meanwhile wait their turn."""
        self._backoff.reset()
        sent: set[str] = set()
        while todo := [(i, f) for i, f in self.state.pending.items() if i not in sent]:
            for client_msg_id, frame in todo:
                await ws.send(frame.decode())
                sent.add(client_msg_id)
        self._emit(Status("connected"))
        self._welcomed.set()

    async def _write(self, frame: bytes) -> None:
        ws = self._ws
        if ws is None or self.status.state != "connected":
            return  # pending sends go out after the next welcome; the rest is moot
        with contextlib.suppress(ConnectionClosed):
            await ws.send(frame.decode())

    async def _ws_url(self) -> str:
        query: dict[str, Any] = dict(self.state.query())
        if self.user is not None:
            query["user"] = self.user
        elif callable(self._token):
            query["token"] = await self._token()
        else:
            query["token"] = self._token
        return f"{self.url}/ws/chat/{quote(self.room)}?{urlencode(query)}"

    def _emit(self, event: Event | Status) -> None:
        if isinstance(event, Status):
            self.status = event
        self._events.put_nowait(event)

    def _end(self, status: Status) -> None:
        if self._ended.is_set():
            return
        self._emit(status)
        self._ended.set()
        self._changed.set()
        self._events.put_nowait(_END)
