"""The launcher's children: started group by group, watched, stopped in reverse order.

Invariants:

* A child is registered before it is spawned, so :meth:`Supervisor.stop_all` (run
  in a ``finally``) reaches every process that may exist, whatever failed.
* Until :meth:`Supervisor.stop_all` begins, any child that exits is a failure:
  :meth:`Supervisor.failed` returns it, and a group still starting is abandoned.
* Every wait is bounded: readiness by ``ready_timeout_s``, each stop by
  ``stop_timeout_s`` before SIGKILL.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from .broker import NatsChild
from .errors import ChildFailed, NotReady, describe_signal
from .lifeline import spawn_options
from .logview import parse, ready_port, render
from .plan import ChildSpec

__all__ = ["Child", "Emit", "Supervisor"]

#: Prints one line on the launcher's stderr.
Emit = Callable[[str], None]

#: Longest log line read whole; a JSON line with a long traceback still fits.
_LINE_LIMIT: Final = 1024 * 1024
#: Log lines kept per child for the report when it dies.
_TAIL_LINES: Final = 20


class Member(Protocol):
    """What the supervisor needs from a child (a service or nats-server)."""

    name: str

    @property
    def pid(self) -> int | None: ...

    @property
    def returncode(self) -> int | None: ...

    async def stop(self, timeout_s: float) -> None: ...

    def kill(self) -> None: ...

    def tail(self, lines: int = 5) -> list[str]: ...


class Child:
    """One service process (``python -m <module>``), its log re-printed as it comes.

    Attributes:
        ready: Resolves to the port from the child's ``service.ready`` line.
        exited: Resolves to the exit code once the process is gone (after ``start``).
    """

    def __init__(
        self, spec: ChildSpec, emit: Emit, on_exit: Callable[[Child], None], width: int = 0
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.exited: asyncio.Task[int] | None = None
        self._emit = emit
        self._on_exit = on_exit
        self._label = spec.name.ljust(width)
        self._lines: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The process id, once spawned."""
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, once the process has exited."""
        return None if self._proc is None else self._proc.returncode

    async def start(self) -> None:
        """Spawn the process; its stdout is dropped (the launcher prints its own summary)."""
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.spec.module,
            env=dict(self.spec.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
            **spawn_options(),
        )
        self.exited = asyncio.create_task(self._run(self._proc), name=f"{self.name}-watch")

    async def _run(self, proc: asyncio.subprocess.Process) -> int:
        assert proc.stderr is not None
        await self._pump(proc.stderr)
        code = await proc.wait()
        self._on_exit(self)
        return code

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # over _LINE_LIMIT: asyncio has discarded it
                self._show(f"{self._label} | <a log line over {_LINE_LIMIT} bytes was dropped>")
                continue
            if not line:
                return
            record = parse(line)
            port = ready_port(record)
            if port is not None and not self.ready.done():
                self.ready.set_result(port)
            for text in render(self._label, record):
                self._show(text)

    def _show(self, text: str) -> None:
        self._lines.append(text)
        self._emit(text)

    async def stop(self, timeout_s: float) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL."""
        if self._proc is None or self.exited is None:
            return
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(self.exited)
            except TimeoutError:
                self._emit(f"chat: {self.name} did not stop within {timeout_s:g} s; killing it")
                self.kill()
        await self.exited

    def kill(self) -> None:
        """Send SIGKILL now."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    def tail(self, lines: int = 5) -> list[str]:
        """The last rendered (and redacted) log lines."""
        return list(self._lines)[-lines:]


class Supervisor:
    """Starts children in groups and stops them all, last group first.

    Args:
        emit: Prints a line on the launcher's stderr.
        ready_timeout_s: Bound on a group's readiness.
        stop_timeout_s: Bound on each child's graceful stop, before SIGKILL.
        width: Child names are padded to this, so log columns align.
    """

    def __init__(
        self,
        emit: Emit,
        *,
        ready_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        width: int = 0,
    ) -> None:
        self._emit = emit
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._width = width
        self._groups: list[list[Member]] = []
        self._failure: asyncio.Future[Member] = asyncio.get_running_loop().create_future()
        self.stopping = False

    def _exited(self, member: Member) -> None:
        if not self.stopping and not self._failure.done():
            self._failure.set_result(member)

    async def start_nats(self, store_dir: Path, port: int) -> NatsChild:
        """Start nats-server (JetStream in ``store_dir``) as the first group.

        Raises:
            ChildFailed: It did not start.
        """
        nats = NatsChild(store_dir, port, self._exited)
        self._groups.append([nats])
        await nats.start()
        self._emit(f"chat: started nats-server (pid {nats.pid}) on {nats.server.url}")
        return nats

    async def start_group(self, specs: Sequence[ChildSpec]) -> dict[str, int]:
        """Start ``specs`` together and wait until each has logged ``service.ready``.

        Returns:
            Each child's name mapped to the port it reported.

        Raises:
            ChildFailed: A child (of this group or an earlier one) exited.
            NotReady: A child was not ready within ``ready_timeout_s``.
        """
        children = [Child(spec, self._emit, self._exited, self._width) for spec in specs]
        self._groups.append(list(children))
        for child in children:
            await child.start()
            self._emit(f"chat: started {child.name} (pid {child.pid})")
        deadline = asyncio.get_running_loop().time() + self._ready_timeout_s
        for child in children:
            waiters: list[asyncio.Future[Any]] = [child.ready, self._failure]
            try:
                async with asyncio.timeout_at(deadline):
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                raise NotReady(child.name, self._ready_timeout_s, child.tail()) from None
            if self._failure.done():
                raise self._failed_error()
        return {child.name: child.ready.result() for child in children}

    async def failed(self) -> ChildFailed:
        """Wait until a child exits on its own; describe it."""
        await asyncio.shield(self._failure)
        return self._failed_error()

    def _failed_error(self) -> ChildFailed:
        member = self._failure.result()
        code = member.returncode
        return ChildFailed(member.name, -1 if code is None else code, member.tail())

    @property
    def pids(self) -> dict[str, int]:
        """Each spawned child's name mapped to its process id."""
        return {m.name: m.pid for group in self._groups for m in group if m.pid is not None}

    async def stop_all(self) -> None:
        """Stop every child, last group first; a group's members stop concurrently."""
        self.stopping = True
        for group in reversed(self._groups):
            results = await asyncio.gather(
                *(member.stop(self._stop_timeout_s) for member in group), return_exceptions=True
            )
            for member, result in zip(group, results, strict=True):
                if isinstance(result, BaseException):
                    self._emit(f"chat: stopping {member.name} failed: {result!r}")
                elif member.pid is not None:
                    self._emit(f"chat: stopped {member.name} ({_how(member.returncode)})")

    def kill_all(self) -> None:
        """SIGKILL every child at once (a second Ctrl-C while stopping)."""
        for group in self._groups:
            for member in group:
                member.kill()


def _how(returncode: int | None) -> str:
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully, so
    # "by SIGTERM" is a normal end for a gateway.
    if returncode is None:
        return "exit code unknown"
    if returncode < 0:
        return f"by {describe_signal(-returncode)}"
    return f"exit code {returncode}"
