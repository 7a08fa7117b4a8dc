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

Rules:

* **Joined** means welcomed, given the roster, and given the history: the last
  ``serverHistory`` frame of a resume (the one with ``resumed``), or of a join;
  or a live message; or, when the gateway keeps no history, ``join_grace_s``
  after the welcome. Only then are pending messages sent again — after what
  the history showed as stored was taken off the list, so a resend is never a
  second copy of a message the room has, even after the gateway's dedup window.
  ``Status("connected")`` and :meth:`ChatClient.connected` mark it.
* **Pacing.** Every frame goes out through a token bucket below the gateway's
  message budget (:mod:`chat_client.pacing`), so neither a burst of sends nor
  the resends after a reconnect are refused as ``rate_limited``.
* **Back-pressure.** At most ``max_events`` events wait unread; beyond that the
  client stops reading its socket, and a gateway whose client reads too slowly
  closes it (4001) as it would any slow client, after which it reconnects and
  resumes.
* **Failures.** The first connection is the caller's: a refusal or a final
  close before joining raises :class:`ChatClosed` from ``__aenter__`` (or from
  :meth:`ChatClient.connected`); a transient one is retried. Later, a final
  close (kicked, a policy violation, a token that expired with no callable to
  renew it), a URL that is not a WebSocket URL, or a bug ends the client: a
  ``Status("closed")`` or ``Status("token expired")`` event, then
  :meth:`ChatClient.events` ends. A transient failure — a close, a refused
  handshake worth retrying, a token callable that failed — is
  ``Status("reconnecting")``, a wait, and another attempt. The back-off starts
  over only after a connection stayed up ``stable_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, urlencode

import msgspec
import structlog
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from chat_protocol.close_codes import CloseCode
from chat_protocol.names import check_room_name

from .pacing import DEFAULT_BURST, DEFAULT_RATE_PER_S, TokenBucket
from .reconnect import ABNORMAL_CLOSURE, Backoff, Verdict, after_close, after_refusal
from .state import Event, HistoryDone, Message, RoomState

__all__ = ["ChatClient", "ChatClosed", "Status", "TokenSource"]

log = structlog.get_logger(__name__)

#: A token, or a callable that gets a fresh one (called before every connection).
TokenSource = str | Callable[[], Awaitable[str]]

#: Unread events past which the client stops reading its socket.
DEFAULT_MAX_EVENTS: Final = 10_000
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
        detail = f" ({status.code})" if status.code is not None else ""
        reason = f": {status.reason}" if status.reason else ""
        super().__init__(f"{status.state}{detail}{reason}")
        self.status = status


class ChatClient:
    """One room of a chat gateway, across reconnects.

    Args:
        url: The gateway's base URL, ``ws://host:port`` (or ``wss://``), or several
            (gateways without a load balancer in front): each attempt after a
            failure or a close goes to the next, in turn.
        room: The room's name (checked as the gateway checks it).
        user: The name to use with the gateway's ``CHAT_AUTH=dev``.
        token: A token (``CHAT_AUTH=jwt``), or an async callable returning a fresh
            one; with a callable, a 4002 (token expired) close reconnects.
        since: Resume from this ``seq`` on the first connection too.
        backoff: The reconnect waits (the default: 0.5 s doubling to 30 s).
        rate_per_s: How many frames a second go out, sustained (``None``: no
            pacing, for a gateway with ``CHAT_RATE_PER_S=0``).
        burst: How many may go back to back after a quiet while.
        open_timeout_s: Bound on each handshake.
        join_grace_s: How long after the welcome a gateway that sends no history
            is taken to have sent it.
        stable_s: A connection up this long resets the back-off.
        max_events: Unread events past which the client stops reading.
        reconnect: ``False``: the first close ends the client.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        room: str,
        *,
        user: str | None = None,
        token: TokenSource | None = None,
        since: int | None = None,
        backoff: Backoff | None = None,
        rate_per_s: float | None = DEFAULT_RATE_PER_S,
        burst: int = DEFAULT_BURST,
        open_timeout_s: float = 10.0,
        join_grace_s: float = 2.0,
        stable_s: float = 10.0,
        max_events: int = DEFAULT_MAX_EVENTS,
        reconnect: bool = True,
    ) -> None:
        if (user is None) == (token is None):
            raise ValueError("give exactly one of user (dev auth) and token")
        if max_events < 1:
            raise ValueError("max_events must be positive")
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("give at least one URL")
        self.urls = [u.rstrip("/") for u in urls]
        self._next_url = 0
        self.room = check_room_name(room)
        self.user = user
        self.state = RoomState(since=since)
        self.status = Status("connecting")
        self._token = token
        self._backoff = backoff if backoff is not None else Backoff()
        self._pacer = None if rate_per_s is None else TokenBucket(rate_per_s, burst)
        self._open_timeout_s = open_timeout_s
        self._join_grace_s = join_grace_s
        self._stable_s = stable_s
        self._max_events = max_events
        self._reconnect = reconnect
        self._events: asyncio.Queue[Event | Status | object] = asyncio.Queue()
        self._room_for_events = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._joined = asyncio.Event()
        self._ended = asyncio.Event()
        self._changed = asyncio.Event()
        self._closing = False
        self._send_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> ChatClient:
        self.start()
        try:
            await self.connected()
        except BaseException:
            await self.close()
            raise
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
        """Wait until a connection has joined the room (see the module's rules).

        Raises:
            ChatClosed: The client ended first.
        """
        joined = asyncio.ensure_future(self._joined.wait())
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({joined, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
            ended.cancel()
        if not self._joined.is_set():
            raise ChatClosed(self.status)

    async def close(self) -> None:
        """Close the connection (1000) and stop reconnecting."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await ws.close(CloseCode.NORMAL)
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._end(Status("closed", CloseCode.NORMAL, "closed by the client"))

    # -- what the application does ---------------------------------------------------

    async def send(self, text: str, client_msg_id: str | None = None) -> str:
        """Send a chat message; its ``clientMsgId``.

        It is pending until echoed, and sent again after a reconnect (see the
        module's rules). While disconnected it waits for the next connection.

        Raises:
            ValueError: The text is empty or too long for the chat.
        """
        client_msg_id, frame = self.state.send(text, client_msg_id)
        await self._write(frame)
        return client_msg_id

    async def fetch_older(self, limit: int = 50) -> bool:
        """Ask for ``limit`` messages older than the oldest seen; ``False`` if not
        connected (nothing is kept for later)."""
        return await self._write(self.state.fetch_older(limit))

    async def typing(self, active: bool) -> bool:
        """Tell the room this client started (or stopped) typing; ``False`` if not
        connected."""
        return await self._write(self.state.typing(active))

    async def events(self) -> AsyncIterator[Event | Status]:
        """Every event, in order, until the client ends (the last is a :class:`Status`)."""
        while True:
            event = await self._take()
            if event is _END:
                return
            yield event  # type: ignore[misc]

    async def next_event(self, timeout_s: float) -> Event | Status:
        """The next event, waiting at most ``timeout_s``.

        Raises:
            TimeoutError: Nothing arrived in time.
            ChatClosed: The client ended and every event was read.
        """
        async with asyncio.timeout(timeout_s):
            event = await self._take()
        if event is _END:
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

    async def wait_ended(self) -> None:
        """Wait until the client has ended."""
        await self._ended.wait()

    # -- the connection loop -----------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._connect_until_final()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here or below: end, never hang the caller
            log.exception("chat_client.failed")
            self._end(Status(Verdict.FINAL, None, f"the client failed: {exc!r}"))

    async def _connect_until_final(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            started = loop.time()
            status = await self._connect_once()
            if self._closing:
                return
            if status.state != Verdict.RECONNECT or not self._reconnect:
                if status.state == Verdict.RECONNECT:
                    status = Status(Verdict.FINAL, status.code, status.reason)
                self._end(status)
                return
            if loop.time() - started >= self._stable_s:
                self._backoff.reset()
            delay = self._backoff.next_delay(status.retry_in_s)
            self._emit(msgspec.structs.replace(status, retry_in_s=delay))
            await asyncio.sleep(delay)

    async def _connect_once(self) -> Status:
        """One connection, from handshake to close: the :class:`Status` it ended with."""
        try:
            url = await self._ws_url()
        except Exception as exc:  # the token callable failed: try again later
            return Status(Verdict.RECONNECT, None, f"could not get a token: {exc}")
        try:
            ws = await websockets.connect(url, open_timeout=self._open_timeout_s, compression=None)
        except InvalidURI as exc:
            return Status(Verdict.FINAL, None, f"not a WebSocket URL: {exc}")
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
            await self._read(ws, resuming="since" in self.state.query())
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            self._joined.clear()
        code = ws.close_code if ws.close_code is not None else ABNORMAL_CLOSURE
        reason = ws.close_reason or ""
        return Status(after_close(code, can_renew_token=callable(self._token)), code, reason)

    async def _read(self, ws: ClientConnection, *, resuming: bool) -> None:
        loop = asyncio.get_running_loop()
        grace_ends: float | None = None  # set by the welcome
        joined = False
        while True:
            if joined or grace_ends is None:
                frame = await ws.recv()
            else:
                try:
                    async with asyncio.timeout(max(0.0, grace_ends - loop.time())):
                        frame = await ws.recv()  # cancelling recv loses nothing
                except TimeoutError:
                    await self._join(ws)  # no history came: the gateway keeps none
                    joined = True
                    continue
            events = self.state.receive(frame)
            if grace_ends is None:
                grace_ends = loop.time() + self._join_grace_s
            for event in events:
                await self._emit_read(event)
            if not joined and _join_complete(events, resuming=resuming):
                await self._join(ws)
                joined = True

    async def _join(self, ws: ClientConnection) -> None:
        """The history is in: send what is still pending, then say so."""
        sent: set[str] = set()
        while todo := [(i, f) for i, f in self.state.pending.items() if i not in sent]:
            for client_msg_id, frame in todo:
                if client_msg_id in self.state.pending:  # not echoed meanwhile
                    await self._paced_send(ws, frame)
                sent.add(client_msg_id)
        self._emit(Status("connected"))
        self._joined.set()

    async def _write(self, frame: bytes) -> bool:
        ws = self._ws
        if ws is None or not self._joined.is_set():
            return False  # pending sends go out once joined; the rest is moot
        try:
            await self._paced_send(ws, frame)
        except ConnectionClosed:
            return False
        return True

    async def _paced_send(self, ws: ClientConnection, frame: bytes) -> None:
        async with self._send_lock:  # one pace and one order for every frame
            if self._pacer is not None and (wait := self._pacer.take()) > 0:
                await asyncio.sleep(wait)
            await ws.send(frame.decode())

    async def _ws_url(self) -> str:
        query: dict[str, Any] = dict(self.state.query())
        if self.user is not None:
            query["user"] = self.user
        elif callable(self._token):
            query["token"] = await self._token()
        else:
            query["token"] = self._token
        base = self.urls[self._next_url % len(self.urls)]
        self._next_url += 1  # the next attempt, if this one ends, goes to the next
        return f"{base}/ws/chat/{quote(self.room)}?{urlencode(query)}"

    # -- events ------------------------------------------------------------------------

    async def _emit_read(self, event: Event) -> None:
        """An event read from the socket: wait while too many are unread."""
        while self._events.qsize() >= self._max_events:
            self._room_for_events.clear()
            await self._room_for_events.wait()
        self._events.put_nowait(event)
        if isinstance(event, Message) and event.mine:
            self._changed.set()

    def _emit(self, event: Status) -> None:
        self.status = event
        self._events.put_nowait(event)

    async def _take(self) -> Event | Status | object:
        event = await self._events.get()
        if event is _END:
            self._events.put_nowait(_END)  # for any other reader
        self._room_for_events.set()
        return event

    def _end(self, status: Status) -> None:
        if self._ended.is_set():
            return
        self._emit(status)
        self._ended.set()
        self._changed.set()
        self._events.put_nowait(_END)


def _join_complete(events: list[Event], *, resuming: bool) -> bool:
    """Whether these events end a join: its history is all in."""
    for event in events:
        if isinstance(event, HistoryDone) and (event.resumed is not None or not resuming):
            return True
        if isinstance(event, Message) and not event.from_history:
            return True
    return False
