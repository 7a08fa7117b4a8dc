"""``chat up`` as a real process for tests: its output read line by line as it comes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from falcon_pachinko.testing import scaled

_STARTED = re.compile(r"^chat: started (\S+) \(pid (\d+)\)")


class Lines:
    """One output stream of the launcher, collected as it arrives."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self.reader = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, pattern: str, timeout_s: float = 30) -> re.Match[str]:
        """The first line (past or future) matching ``pattern``."""
        regex = re.compile(pattern)
        seen = 0
        try:
            async with asyncio.timeout(scaled(timeout_s)), self._changed:
                while True:
                    for line in self.lines[seen:]:
                        if (match := regex.search(line)) is not None:
                            return match
                    seen = len(self.lines)
                    if self.reader.done():
                        raise AssertionError(f"no {pattern!r} before the stream ended")
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} within {timeout_s}s") from None


class Launcher:
    """A running ``python -m chat_launcher up ...``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        self.stdout = Lines(proc.stdout)
        self.stderr = Lines(proc.stderr)

    async def ready(self) -> str:
        """Wait for the summary; return stdout so far."""
        try:
            await self.stdout.wait_for("^Ctrl-C stops everything", timeout_s=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; stderr:\n{self.stderr.text}") from None
        return self.stdout.text

    def pids(self) -> dict[str, int]:
        """Each child's name mapped to its pid, from the launcher's ``started`` lines."""
        found = (_STARTED.match(line) for line in self.stderr.lines)
        return {m.group(1): int(m.group(2)) for m in found if m is not None}

    def survivors(self) -> dict[str, int]:
        """The children still alive."""
        return {name: pid for name, pid in self.pids().items() if alive(pid)}

    async def exit_code(self, timeout_s: float = 30) -> int:
        """Wait (bounded) for the launcher to exit; its output is then complete."""
        async with asyncio.timeout(scaled(timeout_s)):
            code = await self.proc.wait()
            await self.stdout.reader
            await self.stderr.reader
        return code


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def consecutive_free_ports(count: int) -> int:
    """A base port such that ``base .. base+count-1`` are free on 127.0.0.1 right now."""
    for _ in range(50):
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(socket.socket())
            first.bind(("127.0.0.1", 0))
            base = first.getsockname()[1]
            try:
                for port in range(base + 1, base + count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(base)
    raise RuntimeError(f"no {count} consecutive free ports")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any CHAT_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    return {**env, "CHAT_NATS_RECONNECT_WAIT_S": "0.1", **extra}


#: The ``launch`` fixture: ``chat = await launch(*args, env=..., cwd=...)``.
Launch = Callable[..., Awaitable[Launcher]]
