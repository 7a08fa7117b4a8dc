"""``chat client``: the chat in a terminal, on :class:`~chat_client.ChatClient`.

Every line read is sent to the room; everything that arrives is printed, one line
each, with its sender and time (``[12:34:56] Alice: hello``). Three commands:
``/who`` prints who is in the room, ``/older`` asks for older messages, ``/quit``
ends as end of input does. Connection changes go to standard error.

Usable in scripts: it reads standard input to its end, then waits until every
message it sent has been echoed (so stored, with history on), closes, and exits
0. It exits 1 when the chat ends it (refused, kicked, a token that expired) or
when its messages are not echoed within ``--echo-timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable
from typing import Final, TextIO

from .client import ChatClient, ChatClosed, Status
from .state import Event, Failed, HistoryDone, Joined, Left, Message, Notice, Roster, Typing

__all__ = ["format_event", "run", "stdin_lines"]

DEFAULT_ECHO_TIMEOUT_S: Final = 10.0
_COMMANDS: Final = ("/who", "/older", "/quit")


def clock(ts_ms: int | None) -> str:
    """``HH:MM:SS`` local time of a message (now, for a live-only one)."""
    seconds = ts_ms / 1000 if ts_ms is not None else time.time()
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def format_event(event: Event) -> str | None:
    """The line a terminal shows for ``event`` (``None``: nothing to show)."""
    match event:
        case Message(user=user, text=text, ts=ts):
            return f"[{clock(ts)}] {user}: {text}"
        case Roster(users=users):
            return f"-- here: {', '.join(users) or 'nobody'}"
        case Joined(user=user):
            return f"* {user} joined"
        case Left(user=user):
            return f"* {user} left"
        case Notice(text=text, announcement=announcement):
            return f"-- {'announcement: ' if announcement else ''}{text}"
        case Failed(code=code, error=error):
            return f"! {code}: {error}"
        case HistoryDone(resumed=False):
            return "-- some messages expired while you were away; the recent ones follow"
        case Typing():
            return None
    return None


def format_status(status: Status) -> str:
    reason = f": {status.reason}" if status.reason else ""
    detail = f" ({status.code}{reason})" if status.code else ""
    if status.retry_in_s is not None:
        return f"... {status.state} in {status.retry_in_s:.1f}s{detail}"
    return f"... {status.state}{detail}"


async def stdin_lines(stream: TextIO | None = None) -> AsyncIterator[str]:
    """Lines of ``stream`` (standard input), read without blocking the loop.

    A daemon thread reads, so a process that ends (kicked, say) while nobody
    types does not wait for one more line.
    """
    stream = stream if stream is not None else sys.stdin
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens
            for line in stream:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=pump, name="chat-client-stdin", daemon=True).start()
    while (line := await lines.get()) is not None:
        yield line.rstrip("\r\n")


async def run(
    client: ChatClient,
    lines: AsyncIterator[str] | Iterable[str],
    out: TextIO,
    err: TextIO,
    *,
    echo_timeout_s: float = DEFAULT_ECHO_TIMEOUT_S,
) -> int:
    """Run the terminal client until the input ends or the chat ends it; the exit code."""
    client.start()
    printer = asyncio.create_task(_print_events(client, out, err))
    try:
        try:
            await client.connected()
        except ChatClosed as exc:
            print(f"chat client: {exc}", file=err)
            return 1
        async for line in _until_ended(client, _aiter(lines)):
            if not await _handle(client, line, out, err):
                break
        if client.ended:
            print(f"chat client: {client.status.state}", file=err)
            return 1
        try:
            await client.drain(echo_timeout_s)
        except TimeoutError:
            print(
                f"chat client: {len(client.state.pending)} message(s) not echoed "
                f"within {echo_timeout_s:g}s",
                file=err,
            )
            return 1
        except ChatClosed as exc:
            print(f"chat client: {exc}", file=err)
            return 1
        return 0
    finally:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            await printer


async def _handle(client: ChatClient, line: str, out: TextIO, err: TextIO) -> bool:
    """Act on one input line; ``False`` to stop reading."""
    if not line.strip():
        return True
    if line.startswith("/"):
        command = line.split()[0]
        if command == "/who":
            print(f"-- here: {', '.join(sorted(client.state.users)) or 'nobody'}", file=out)
        elif command == "/older":
            await client.fetch_older()
        elif command == "/quit":
            return False
        else:
            print(f"! unknown command {command}; try {', '.join(_COMMANDS)}", file=err)
        return True
    try:
        await client.send(line)
    except ValueError as exc:
        print(f"! not sent: {exc}", file=err)
    return True


async def _print_events(client: ChatClient, out: TextIO, err: TextIO) -> None:
    async for event in client.events():
        if isinstance(event, Status):
            print(format_status(event), file=err, flush=True)
            continue
        text = format_event(event)
        if text is not None:
            print(text, file=err if isinstance(event, Failed) else out, flush=True)


async def _until_ended(client: ChatClient, lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """``lines`` until they end or the client does, whichever comes first."""
    ended = asyncio.ensure_future(client.wait_ended())
    try:
        while True:
            line = asyncio.ensure_future(anext(lines))
            await asyncio.wait({line, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not line.done():
                line.cancel()
                return
            try:
                yield line.result()
            except StopAsyncIteration:
                return
    finally:
        ended.cancel()


async def _aiter(lines: AsyncIterator[str] | Iterable[str]) -> AsyncIterator[str]:
    if isinstance(lines, AsyncIterator):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line
