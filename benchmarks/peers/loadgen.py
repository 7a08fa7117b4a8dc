"""The load generator: one worker process of K, driven over a pipe by the benchmark.

A worker owns a share of the clients (picows WebSocket clients on uvloop: a
callback per frame, so that the load generator costs little next to the server it
measures). It speaks the chat protocol, or socket.io's engine.io v4 websocket
transport carrying the same JSON objects as ``message`` events.

Commands (tuples over the pipe), each answered with one reply:

* ``("connect", protocol, [(url, room, sender), ...], concurrency, t_start, timeout_s)``
  → ``("connected", ok, elapsed_s, first_error)``: open the clients, from
  ``t_start`` (``time.monotonic()``, the same clock in every process), each done
  once it received the welcome;
* ``("send", tag, rate, duration_s, t_start)`` → ``("sent", [messages per room], lag_ms)``:
  the senders send ``rate x duration_s`` messages in turn, paced open-loop from
  ``t_start`` (a message is sent when its time comes, whatever the server does);
  each text carries the step's tag and its ``time.monotonic_ns()`` send time;
* ``("drain", expected, timeout_s)`` → ``("drained", received, latencies, stray, closed, cpu_s)``:
  wait until this worker's clients received ``expected`` messages of the step (or
  the bound), then report them: ``latencies`` is an ``array('q')`` of ns as bytes;
* ``("close",)`` → ``("closed", n)``; ``("exit",)`` ends the worker.

Any exception is answered with ``("error", text)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from array import array
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, Final

import msgspec
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

#: Every chat text is this long: ``"<tag> <send ns, 19 digits> "`` and padding.
TEXT_CHARS: Final = 64
_PAD: Final = "x" * (TEXT_CHARS - 23)
_CHAT_PREFIX: Final = b'{"type":"clientSendMessage","payload":{"text":"'
_CHAT_SUFFIX: Final = b'"}}'
_SIO_PREFIX: Final = b'42["message",' + _CHAT_PREFIX
_SIO_SUFFIX: Final = _CHAT_SUFFIX + b"]"
_PACE_S: Final = 0.002  # the pacing loop wakes at least this often


class _Payload(msgspec.Struct):
    text: str = ""


class _Frame(msgspec.Struct):
    type: str
    payload: _Payload = msgspec.field(default_factory=_Payload)


_decode_chat: Final = msgspec.json.Decoder(_Frame).decode
_decode_event: Final = msgspec.json.Decoder(tuple[str, _Frame]).decode


class Client(WSListener):
    """One connection: counts what it receives for the worker."""

    def __init__(self, worker: Worker, room: int, sender: bool, socketio: bool) -> None:
        self.worker = worker
        self.room = room
        self.sender = sender
        self.socketio = socketio
        self.transport: WSTransport | None = None
        self.welcomed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            data = frame.get_payload_as_bytes()
            if not self.socketio:
                self._on_message(_decode_chat(data))
            elif data.startswith(b"42"):
                self._on_message(_decode_event(data[2:])[1])
            else:
                self._on_engineio(transport, data)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def _on_message(self, message: _Frame) -> None:
        if message.type == "serverNewMessage":
            self.worker.on_text(message.payload.text)
        elif message.type == "serverSystemMessage" and not self.welcomed.done():
            self.welcomed.set_result(None)
        elif message.type == "serverError":
            self.worker.errors += 1

    def _on_engineio(self, transport: WSTransport, data: bytes) -> None:
        if data.startswith(b"0"):  # engine.io open: connect to the default namespace
            transport.send(WSMsgType.TEXT, b"40")
        elif data == b"2":  # engine.io ping
            transport.send(WSMsgType.TEXT, b"3")
        elif data.startswith(b"44") and not self.welcomed.done():
            self.welcomed.set_exception(ConnectionError(f"socket.io refused: {data[:200]!r}"))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if not self.welcomed.done():
            self.welcomed.set_exception(ConnectionError("closed before the welcome"))
        self.worker.on_closed(self)

    def send_text(self, text: str) -> None:
        assert self.transport is not None
        if self.socketio:
            self.transport.send(WSMsgType.TEXT, _SIO_PREFIX + text.encode() + _SIO_SUFFIX)
        else:
            self.transport.send(WSMsgType.TEXT, _CHAT_PREFIX + text.encode() + _CHAT_SUFFIX)


class Worker:
    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.tag = "--"
        self.received = 0
        self.expected = 1 << 62
        self.stray = 0
        self.errors = 0
        self.closed = 0
        self.latencies = array("q")
        self.drained = asyncio.Event()
        self.closing = False

    # -- callbacks ----------------------------------------------------------------

    def on_text(self, text: str) -> None:
        if text[:2] != self.tag:
            self.stray += 1
            return
        self.latencies.append(time.monotonic_ns() - int(text[3:22]))
        self.received += 1
        if self.received >= self.expected:
            self.drained.set()

    def on_closed(self, client: Client) -> None:
        if not self.closing:
            self.closed += 1
            self.drained.set()  # a closed client will not receive: stop waiting

    # -- commands -----------------------------------------------------------------

    async def connect(
        self,
        protocol: str,
        specs: Sequence[tuple[str, int, bool]],
        concurrency: int,
        t_start: float,
        timeout_s: float,
    ) -> tuple[str, int, float, str | None]:
        self.closing = False
        await _until(t_start)
        limit = asyncio.Semaphore(concurrency)
        socketio = protocol == "socketio"
        first_error: list[str] = []

        async def one(url: str, room: int, sender: bool) -> None:
            client: Client | None = None

            def factory() -> Client:
                nonlocal client
                client = Client(self, room, sender, socketio)
                return client

            try:
                async with limit:
                    await ws_connect(factory, url, websocket_handshake_timeout=timeout_s)
                    assert client is not None
                    self.clients.append(client)
                    await client.welcomed
            except Exception as exc:  # reported, never raised: the count tells
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}"[:300])
                raise

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(one(*s) for s in specs), return_exceptions=True)
        elapsed = time.monotonic() - t_start
        ok = sum(1 for c in self.clients if c.welcomed.done() and not c.welcomed.exception())
        if ok < len(specs) and not first_error:
            first_error.append(f"{len(specs) - ok} not welcomed within {timeout_s:g}s")
        return "connected", ok, elapsed, first_error[0] if first_error else None

    async def send(
        self, tag: str, rate: float, duration_s: float, t_start: float
    ) -> tuple[str, list[int], float]:
        self.tag, self.received, self.stray, self.errors = tag, 0, 0, 0
        self.expected, self.latencies = 1 << 62, array("q")
        self.drained.clear()
        senders = [c for c in self.clients if c.sender and not c.closed]
        rooms = 1 + max((c.room for c in self.clients), default=0)
        per_room = [0] * rooms
        total = round(rate * duration_s) if senders else 0
        sent, lag = 0, 0.0
        bound = t_start + duration_s + 1.0  # a sender that cannot keep up stops here
        await _until(t_start)
        while sent < total:
            now = time.monotonic()
            due = min(total, int((now - t_start) * rate) + 1)
            lag = max(lag, now - (t_start + (sent / rate)))
            while sent < due:
                client = senders[sent % len(senders)]
                client.send_text(f"{tag} {time.monotonic_ns():019d} {_PAD}")
                per_room[client.room] += 1
                sent += 1
            if now > bound:
                break
            await asyncio.sleep(min(_PACE_S, max(0.0, t_start + sent / rate - time.monotonic())))
        return "sent", per_room, lag * 1e3

    async def drain(
        self, expected: int, timeout_s: float
    ) -> tuple[str, int, bytes, int, int, int, float]:
        self.expected = expected
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.received < expected and not self.closed:
                    self.drained.clear()
                    await self.drained.wait()
        received, latencies = self.received, self.latencies
        self.tag, self.expected = "--", 1 << 62  # later arrivals are stray
        return (
            "drained",
            received,
            latencies.tobytes(),
            self.stray,
            self.closed,
            self.errors,
            time.process_time(),
        )

    async def close(self, timeout_s: float = 10) -> tuple[str, int]:
        self.closing = True
        clients, self.clients = self.clients, []
        for client in clients:
            if client.transport is not None and not client.closed:
                client.transport.send_close(WSCloseCode.OK)
                client.transport.disconnect()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(
                    *(c.transport.wait_disconnected() for c in clients if c.transport is not None)
                )
        self.closed = 0
        return "closed", len(clients)


async def _until(t: float) -> None:
    """Pacing: wait for a start time agreed with the other workers."""
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _serve(conn: Connection) -> None:
    worker = Worker()
    loop = asyncio.get_running_loop()
    commands: dict[str, Any] = {
        "connect": worker.connect,
        "send": worker.send,
        "drain": worker.drain,
        "close": worker.close,
    }
    while True:
        name, *args = await loop.run_in_executor(None, conn.recv)
        if name == "exit":
            await worker.close(timeout_s=2)
            return
        try:
            reply: Any = await commands[name](*args)
        except Exception as exc:
            reply = ("error", f"{name}: {type(exc).__name__}: {exc}")
        conn.send(reply)


def worker_main(conn: Connection, cpu: int | None) -> None:
    """The worker process: pin to ``cpu`` (when given), then serve commands."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    import uvloop

    uvloop.run(_serve(conn))
