"""Real processes for system tests: nats-server, chat-rooms, chat-announcer, chat-gateway.

Each service runs as ``python -m <package>`` with its own environment, logs JSON
lines on stderr, says ``service.listening`` (with the port it bound) once its HTTP
endpoints answer and ``service.ready`` once NATS is connected and it serves.
Waiting is done on those log lines, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from falcon_pachinko.testing import scaled
from falcon_pachinko.testing.nats import NatsCluster, NatsServer

LogPredicate = Callable[[dict[str, Any]], bool]


class Service:
    """One service process, its log lines parsed as they arrive."""

    def __init__(self, name: str, module: str, env: Mapping[str, str]) -> None:
        self.name = name
        self.module = module
        self.env = dict(env)
        self.proc: asyncio.subprocess.Process | None = None
        self.logs: list[dict[str, Any]] = []
        self.port: int | None = None
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 20, until: str = "service.ready") -> Service:
        """Start the process and wait for the log event ``until`` (which has the port)."""
        env = {**os.environ, **self.env}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read(self.proc), name=f"{self.name}-logs")
        ready = await self.wait_for(lambda e: e.get("event") == until, timeout_s)
        self.port = ready.get("port")
        return self

    def since(self, mark: int, event: str, **fields: Any) -> LogPredicate:
        """Matches log event ``event`` with ``fields``, logged after the first ``mark`` lines."""

        def predicate(e: dict[str, Any]) -> bool:
            return (
                e.get("event") == event
                and all(e.get(k) == v for k, v in fields.items())
                and self.logs.index(e) >= mark
            )

        return predicate

    @property
    def nats_server(self) -> str | None:
        """``host:port`` of the NATS server the service is connected to, from its logs."""
        for e in reversed(self.logs):
            if e.get("event") in ("nats.connected", "nats.reconnected"):
                return str(e.get("server"))
            if e.get("event") == "nats.disconnected":
                return None
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "raw", "line": line.decode(errors="replace").rstrip()}
            if not isinstance(event, dict):
                event = {"event": "raw", "line": str(event)}
            async with self._changed:
                self.logs.append(event)
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: LogPredicate, timeout_s: float = 10) -> dict[str, Any]:
        """The first log event (past or future) matching ``predicate``.

        Raises:
            AssertionError: The process exited or the time ran out first; the
                message carries the last log lines.
        """
        seen = 0
        try:
            async with asyncio.timeout(scaled(timeout_s)), self._changed:
                while True:
                    for event in self.logs[seen:]:
                        if predicate(event):
                            return event
                    seen = len(self.logs)
                    if self._reader is not None and self._reader.done():
                        raise AssertionError(f"{self.name} exited:\n{self.tail()}")
                    await self._changed.wait()
        except TimeoutError:
            message = f"{self.name}: no such log event in time:\n{self.tail()}"
            raise AssertionError(message) from None

    def tail(self, lines: int = 25) -> str:
        return "\n".join(json.dumps(e) for e in self.logs[-lines:])

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 15) -> int:
        """Send ``sig`` and wait for the exit code (SIGKILL after the bound)."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                async with asyncio.timeout(scaled(timeout_s)):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def wait_exit(self, timeout_s: float = 15) -> int:
        """Wait for the process to exit by itself; return its exit code.

        Raises:
            AssertionError: It is still running after the bound.
        """
        assert self.proc is not None
        try:
            async with asyncio.timeout(scaled(timeout_s)):
                code = await self.proc.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name} did not exit:\n{self.tail()}") from None
        if self._reader is not None:
            await self._reader
        return code

    async def kill(self) -> int:
        return await self.stop(signal.SIGKILL)


class Cluster:
    """A NATS server (or cluster) plus the services a test starts; all stop at the end."""

    def __init__(self, nats: NatsServer | NatsCluster, base_env: Mapping[str, str]) -> None:
        self.nats = nats
        self.base_env = dict(base_env)
        self.services: list[Service] = []

    def env(self, **overrides: str) -> dict[str, str]:
        return {**self.base_env, "CHAT_NATS_URL": self.nats.url, **overrides}

    async def start(
        self, name: str, module: str, *, until: str = "service.ready", **env: str
    ) -> Service:
        service = Service(name, module, self.env(**env))
        self.services.append(service)
        return await service.start(until=until)

    async def rooms(self, until: str = "service.ready", **env: str) -> Service:
        return await self.start("rooms", "chat_rooms", until=until, CHAT_METRICS_PORT="0", **env)

    async def announcer(self, until: str = "service.ready", **env: str) -> Service:
        return await self.start(
            "announcer", "chat_announcer", until=until, CHAT_METRICS_PORT="0", **env
        )

    async def gateway(self, until: str = "service.ready", **env: str) -> Service:
        return await self.start("gateway", "chat_gateway", until=until, CHAT_PORT="0", **env)

    def ws_url(self, gateway: Service, room: str, **query: str) -> str:
        from urllib.parse import urlencode

        suffix = f"?{urlencode(query)}" if query else ""
        return f"ws://127.0.0.1:{gateway.port}/ws/chat/{room}{suffix}"

    async def close(self) -> None:
        for service in reversed(self.services):
            if service.returncode is None:
                await service.stop()


# Fast presence timing for tests: heartbeats every 0.3 s, dead after 2 s.
FAST_PRESENCE = {
    "CHAT_HEARTBEAT_INTERVAL_S": "0.3",
    "CHAT_PRESENCE_TTL_S": "2",
    "CHAT_PRESENCE_CHECK_INTERVAL_S": "0.2",
}


BASE_ENV = {
    "CHAT_LOG_FORMAT": "json",
    "CHAT_LOG_LEVEL": "info",
    "CHAT_AUTH": "dev",
    "CHAT_NATS_RECONNECT_WAIT_S": "0.1",
    # Faults, not message budgets, are under test here: test bursts go through.
    "CHAT_RATE_PER_S": "0",
    **FAST_PRESENCE,
}


@contextlib.asynccontextmanager
async def _chat_on(nats: Any, env: Mapping[str, str], *, started: bool) -> AsyncIterator[Cluster]:
    """A :class:`Cluster` on ``nats`` (started here unless ``started`` is False);
    every service and then the server are stopped at the end."""
    if started:
        await nats.start()
    result = Cluster(nats, {**BASE_ENV, **env})
    try:
        yield result
    finally:
        await result.close()
        await nats.stop()


def cluster(tmp_path: Path, **env: str) -> contextlib.AbstractAsyncContextManager[Cluster]:
    """A running nats-server (JetStream on) and a :class:`Cluster` to start services on."""
    return _chat_on(NatsServer(tmp_path / "nats", monitor=True), env, started=True)


def nats_cluster_chat(
    tmp_path: Path, *, jetstream: bool = False, **env: str
) -> contextlib.AbstractAsyncContextManager[Cluster]:
    """Three routed nats-servers (``chat.nats.urls``); services get all three URLs.

    With ``jetstream``, clustered JetStream (the history stream can have 3 replicas).
    """
    nats = NatsCluster(tmp_path / "nats-cluster", jetstream=jetstream)
    if not jetstream:
        # No KV for a lease: one rooms replica, active alone.
        env = {"CHAT_ROOMS_LEASE_BUCKET": "", **env}
    return _chat_on(nats, env, started=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def late_nats_chat(tmp_path: Path, **env: str) -> contextlib.AbstractAsyncContextManager[Cluster]:
    """A :class:`Cluster` whose nats-server is *not* running yet: ``await chat.nats.start()``.

    Its port is fixed in advance, so services started before it point at it.
    """
    return _chat_on(NatsServer(tmp_path / "nats", port=free_port()), env, started=False)


def http_status(port: int | None, path: str) -> int:
    """Status of ``GET http://127.0.0.1:<port><path>`` (blocking; call via to_thread)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def nats_subscriptions(chat: Cluster, client_name: str) -> int:
    """Subscriptions nats-server holds for the connection named ``client_name``
    (from its ``/connz`` monitoring endpoint; blocking, call via to_thread).

    Raises:
        AssertionError: No single connection has that name.
    """
    nats = chat.nats
    assert isinstance(nats, NatsServer) and nats.monitor_port is not None
    url = f"http://127.0.0.1:{nats.monitor_port}/connz?subs=1&limit=1024"
    with urllib.request.urlopen(url, timeout=5) as resp:
        connections = json.loads(resp.read())["connections"]
    mine = [c for c in connections if c.get("name") == client_name]
    assert len(mine) == 1, [c.get("name") for c in connections]
    return int(mine[0]["subscriptions"])
