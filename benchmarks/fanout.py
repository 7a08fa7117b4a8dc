"""End-to-end fan-out: real gateway processes, real WebSocket clients, one room.

C clients join one room; S of them send M chat messages each, as fast as the
server accepts them; every client must receive every message (counted, and checked
in order per sender). Each message's text carries its ``time.monotonic()`` send
time, so latency is computed on receipt (same host, same clock).

Configurations, all measured in the same run:

1. ``memory`` (baseline): one gateway process, ``CHAT_BACKEND=memory``, no NATS,
   live-only messages (``CHAT_HISTORY=false``).
2. ``memory-history``: the same with chat messages stored (bounded memory).
3. ``nats-live``: one gateway on ``CHAT_BACKEND=nats``, the rooms service,
   nats-server; live-only messages.
4. ``nats``: the same with every chat message stored in JetStream first (the
   product as deployed): beside ``nats-live``, the cost of durability.
5. ``nats2``: two gateways on NATS with history, clients split evenly, senders
   on both.

The clients all live in this one process, on one event loop (uvloop when
installed): its CPU time is printed next to the wall time, with the services'
CPU time, so that a reader can tell which process was the bottleneck.

    python -m benchmarks.fanout [--clients C] [--messages M] [--senders S] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
from tests.system.cluster import Cluster, Service, cluster
from websockets.exceptions import ConnectionClosed, WebSocketException

from falcon_pachinko.testing import WSClient, connect

from . import BenchmarkFailed, machine_facts, run, table

ROOM: Final = "bench"
LOOPBACK: Final = "127.0.0.1"
#: The gateway prints where it listens on stdout (its ``service.ready`` log line is
#: info-level, filtered out at ``CHAT_LOG_LEVEL=warning``).
_BANNER: Final = re.compile(rb"Chat is running on http://127\.0\.0\.1:(\d+)/")
#: Production presence timing (the system tests' fast timing adds heartbeat load).
_PRESENCE: Final = {
    "CHAT_HEARTBEAT_INTERVAL_S": "1.5",
    "CHAT_PRESENCE_TTL_S": "5",
    "CHAT_PRESENCE_CHECK_INTERVAL_S": "0.5",
}
_SLOW_CONSUMER: Final = 4001
_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# -- parameters ----------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    clients: int
    messages: int
    senders: int
    warmup: int
    text_chars: int
    connect_concurrency: int
    rate: float
    timeout_s: float
    configs: tuple[str, ...]

    @property
    def sent(self) -> int:
        return self.senders * self.messages

    @property
    def deliveries(self) -> int:
        # A sender is a member of the room too, and receives its own messages.
        return self.sent * self.clients

    @property
    def queue_messages(self) -> int:
        # Every message of the run may wait in one queue, plus the join storm:
        # the benchmark measures throughput, not slow-consumer disconnects.
        return max(1024, 2 * (self.sent + self.senders * self.warmup + self.clients))


@dataclass(frozen=True)
class Deployment:
    key: str
    label: str
    backend: str
    gateways: int
    history: bool = True
    #: ``CHAT_WS_PROTOCOL``: the library writing to the sockets, or plain ASGI.
    ws: str = "pachinko"


#: Run only when named in ``--configs``: uvicorn's other WebSocket protocols.
ON_REQUEST: Final = frozenset({"memory-websockets", "memory-wsproto"})
DEPLOYMENTS: Final = {
    d.key: d
    for d in (
        Deployment("memory", "memory, live only (baseline)", "memory", 1, history=False),
        Deployment("memory-history", "memory, history", "memory", 1),
        Deployment(
            "memory-asgi", "memory, history, plain ASGI", "memory", 1, ws="websockets-sansio"
        ),
        Deployment("nats-live", "nats, live only", "nats", 1, history=False),
        Deployment("nats", "nats + JetStream history", "nats", 1),
        Deployment("nats-asgi", "nats + history, plain ASGI", "nats", 1, ws="websockets-sansio"),
        Deployment("nats2", "nats + history, 2 gateways", "nats", 2),
        Deployment(
            "memory-websockets",
            "memory, history, uvicorn websockets",
            "memory",
            1,
            ws="websockets",
        ),
        Deployment("memory-wsproto", "memory, history, uvicorn wsproto", "memory", 1, ws="wsproto"),
    )
}
BASELINE: Final = "memory"


# -- processes -----------------------------------------------------------------


async def _ready(port: int, timeout_s: float) -> bool:
    """Poll ``/readyz`` until it answers 200 (bounded)."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(probe):
            return True
        await asyncio.sleep(0.05)  # polling a probe endpoint: there is no event to await
    return False


class GatewayProcess(Service):
    """A gateway process whose port is read from the banner it prints on stdout.

    ``tests.system.cluster.Service`` waits for the ``service.ready`` log line,
    which is logged at info level; the benchmark runs gateways at warning level so
    that logging stays off the hot path, hence this variant of ``start``.
    """

    _stdout: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 20) -> Service:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            env={**os.environ, **self.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read(self.proc), name=f"{self.name}-logs")
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        try:
            async with asyncio.timeout(timeout_s):
                while self.port is None and (line := await stdout.readline()):
                    if (match := _BANNER.search(line)) is not None:
                        self.port = int(match.group(1))
        except TimeoutError:
            pass
        if self.port is None:
            await self.stop()
            raise BenchmarkFailed(f"{self.name} did not start:\n{self.tail()}")
        self._stdout = asyncio.create_task(_drain(stdout), name=f"{self.name}-stdout")
        # It listens before NATS answers; the chat opens once /readyz says so.
        if not await _ready(self.port, timeout_s):
            await self.stop()
            raise BenchmarkFailed(f"{self.name} never became ready:\n{self.tail()}")
        return self

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 15) -> int:
        code = await super().stop(sig, timeout_s)
        if self._stdout is not None:
            await self._stdout
        return code

    def events(self, name: str) -> int:
        return sum(1 for e in self.logs if e.get("event") == name)

    def problems(self) -> list[dict[str, Any]]:
        """Log events at warning level or above, except the expected dev-auth one."""
        return [e for e in self.logs if e.get("event") != "auth.development_mode"]


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def base_gateway_env(backend: str, *, history: bool = True) -> dict[str, str]:
    """A gateway as deployed, except what every benchmark must change."""
    return {
        "CHAT_BACKEND": backend,
        "CHAT_HISTORY": "true" if history else "false",
        "CHAT_AUTH": "dev",
        "CHAT_HOST": LOOPBACK,
        "CHAT_PORT": "0",
        "CHAT_LOG_LEVEL": "warning",
        "CHAT_LOG_FORMAT": "json",
        "CHAT_ANNOUNCE_INTERVAL_S": "0",
        # Senders publish far faster than a person: the message budget is off,
        # and so is the per-gateway connection cap.
        "CHAT_RATE_PER_S": "0",
        "CHAT_MAX_CONNECTIONS": "0",
    }


def gateway_env(params: Params, deployment: Deployment) -> dict[str, str]:
    return base_gateway_env(deployment.backend, history=deployment.history) | {
        "CHAT_WS_PROTOCOL": deployment.ws,
        "CHAT_OUTBOUND_QUEUE_MESSAGES": str(params.queue_messages),
        "CHAT_OUTBOUND_QUEUE_BYTES": str(max(4 << 20, params.queue_messages * 4096)),
    }


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a running process (Linux ``/proc``; else ``None``)."""
    if pid is None:
        return None
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _total(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


@dataclass
class Running:
    """A started deployment: its gateways and the infrastructure processes."""

    gateways: list[GatewayProcess]
    infra_pids: list[int] = field(default_factory=list)

    def gateway_cpu(self) -> float | None:
        return _total([process_cpu_s(g.proc.pid if g.proc else None) for g in self.gateways])

    def infra_cpu(self) -> float | None:
        return _total([process_cpu_s(pid) for pid in self.infra_pids])


@contextlib.asynccontextmanager
async def deployed(deployment: Deployment, params: Params) -> AsyncIterator[Running]:
    """Start ``deployment``'s processes; stop them all on exit."""
    if deployment.backend == "memory":
        gateway = GatewayProcess("gateway", "chat_gateway", gateway_env(params, deployment))
        try:
            await gateway.start()
            yield Running([gateway])
        finally:
            if gateway.proc is not None:
                await gateway.stop()
        return
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        async with cluster(Path(tmp), **_PRESENCE) as chat:
            rooms = await chat.rooms()
            gateways = [
                await _start_gateway(chat, f"gateway-{i}", params, deployment)
                for i in range(deployment.gateways)
            ]
            pids = [p.pid for p in (chat.nats.process, rooms.proc) if p is not None]
            yield Running(gateways, pids)


async def _start_gateway(
    chat: Cluster, name: str, params: Params, deployment: Deployment
) -> GatewayProcess:
    gateway = GatewayProcess(name, "chat_gateway", chat.env(**gateway_env(params, deployment)))
    chat.services.append(gateway)  # the cluster stops it
    await gateway.start()
    return gateway


# -- clients -------------------------------------------------------------------


class _Payload(msgspec.Struct):
    text: str = ""


class _Frame(msgspec.Struct):
    type: str
    payload: _Payload


_decode_frame: Final = msgspec.json.Decoder(_Frame).decode
_encode: Final = msgspec.json.Encoder().encode


@dataclass(eq=False)
class Client:
    index: int
    ws: WSClient
    measured: int = 0
    out_of_order: int = 0
    next_seq: dict[int, int] = field(default_factory=dict)
    close_code: int | None = None


class Fleet:
    """The benchmark's clients, their readers, and the counts that verify delivery.

    Text of a benchmark message: ``"<phase> <sender> <seq> <monotonic send time> pad"``
    where phase ``w`` is the warm-up/barrier and ``m`` the measured run.
    """

    def __init__(self, params: Params, urls: Sequence[str]) -> None:
        self.params = params
        self.urls = urls
        self.clients: list[Client] = []
        self.latencies: list[float] = []
        #: With several gateways: latencies of deliveries across gateways, and within one.
        self.across: list[float] = []
        self.within: list[float] = []
        self.barrier_senders = max(params.senders, len(set(urls)))
        self.barrier_left = 0
        self.measured_left = 0
        self.last_delivery = 0.0
        # Which messages reached at least one recipient yet (sender * M + seq).
        self._seen = bytearray(params.sent)
        self.first_left = params.sent
        self.all_accepted = 0.0
        self.stopping = False
        self.progress = asyncio.Event()
        self.failure: str | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._pad = "x" * max(0, params.text_chars - 40)

    async def connect(self, stack: contextlib.AsyncExitStack) -> None:
        limit = asyncio.Semaphore(self.params.connect_concurrency)

        async def one(i: int) -> None:
            url = f"{self.urls[i % len(self.urls)]}?user=u{i}"
            async with limit:
                ws = await stack.enter_async_context(connect(url, timeout_s=10))
            self.clients.append(Client(i, ws))
            await ws.expect("serverSystemMessage")  # the welcome: the handshake is done
            await ws.expect("serverPresence")

        try:
            async with asyncio.timeout(self.params.timeout_s):
                await asyncio.gather(*(one(i) for i in range(self.params.clients)))
        except (TimeoutError, OSError, WebSocketException) as exc:
            raise BenchmarkFailed(
                f"connecting {self.params.clients} clients: {len(self.clients)} connected "
                f"within {self.params.timeout_s:g}s, then {exc!r}"
            ) from exc
        self.clients.sort(key=lambda c: c.index)
        self._readers = [asyncio.create_task(self._read(c)) for c in self.clients]

    async def barrier(self) -> None:
        """Every barrier sender sends ``warmup`` messages; wait until all arrived.

        The barrier senders include a client on every gateway. All joins were
        published before (every handshake is done), and each gateway publishes in
        order, so once everything arrived no "joined" message is still in flight.
        """
        senders = self.clients[: self.barrier_senders]
        self.barrier_left = len(senders) * self.params.warmup * len(self.clients)
        await self._run_senders(senders, "w", self.params.warmup)
        await self._until(lambda: self.barrier_left <= 0, "barrier (warm-up) messages")

    async def measure(self) -> tuple[float, float]:
        """The measured run.

        Returns:
            Seconds from the first send until every message had reached at least
            one recipient (the server took them all in and fanned them out), and
            until the last delivery.
        """
        self.measured_left = self.params.deliveries
        t0 = time.monotonic()
        await self._run_senders(
            self.clients[: self.params.senders], "m", self.params.messages, self.params.rate
        )
        await self._until(lambda: self.measured_left <= 0, "measured messages")
        return self.all_accepted - t0, self.last_delivery - t0

    def verify(self) -> None:
        expected = self.params.sent
        short = [c for c in self.clients if c.measured != expected]
        disordered = sum(c.out_of_order for c in self.clients)
        if short or disordered:
            missing = sum(expected - c.measured for c in short)
            raise BenchmarkFailed(
                f"{len(short)} client(s) did not receive exactly {expected} messages "
                f"(net {missing} missing); {disordered} out of order or duplicated"
            )

    async def close(self) -> None:
        self.stopping = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.params.timeout_s):
                await asyncio.gather(*(c.ws.close() for c in self.clients))
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    # -- internals ---------------------------------------------------------

    async def _run_senders(
        self, senders: Sequence[Client], phase: str, count: int, rate: float = 0
    ) -> None:
        try:
            async with asyncio.timeout(self.params.timeout_s):
                await asyncio.gather(*(self._send(c, phase, count, rate) for c in senders))
        except TimeoutError:
            raise BenchmarkFailed(
                f"the senders could not send within {self.params.timeout_s:g}s"
            ) from None
        except ConnectionClosed as exc:
            raise BenchmarkFailed(f"a sender's connection closed: {exc}") from exc

    async def _send(self, client: Client, phase: str, count: int, rate: float) -> None:
        """Send ``count`` messages: back to back, or ``rate`` per second when given."""
        conn = client.ws.conn
        start = time.monotonic()
        for seq in range(count):
            if rate > 0 and (delay := start + seq / rate - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            text = f"{phase} {client.index} {seq} {time.monotonic():.7f} {self._pad}"
            frame = _encode({"type": "clientSendMessage", "payload": {"text": text}})
            await conn.send(frame.decode())

    async def _until(self, done: Any, what: str) -> None:
        try:
            async with asyncio.timeout(self.params.timeout_s):
                while not done() and self.failure is None:
                    self.progress.clear()
                    await self.progress.wait()
        except TimeoutError:
            raise BenchmarkFailed(
                f"{what}: not all delivered within {self.params.timeout_s:g}s; {self._shortfall()}"
            ) from None
        if self.failure is not None:
            raise BenchmarkFailed(f"{what}: {self.failure}")

    def _shortfall(self) -> str:
        expected = self.params.sent
        short = [c for c in self.clients if c.measured < expected]
        codes = sorted({c.close_code for c in self.clients if c.close_code is not None})
        return (
            f"{len(short)} of {len(self.clients)} clients short, "
            f"{sum(expected - c.measured for c in short)} deliveries missing; "
            f"close codes seen: {codes or 'none'}"
        )

    async def _read(self, client: Client) -> None:
        try:
            async for frame in client.ws.conn:
                self._on_frame(client, frame)
        except ConnectionClosed:
            pass
        except Exception as exc:  # a frame we cannot read must fail the run, not hang it
            self._fail(f"client {client.index} received an unexpected frame: {exc!r}")
            return
        client.close_code = client.ws.conn.close_code
        if not self.stopping:
            slow = " (slow consumer)" if client.close_code == _SLOW_CONSUMER else ""
            self._fail(f"client {client.index} was closed with {client.close_code}{slow}")

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self.progress.set()

    def _on_frame(self, client: Client, frame: str | bytes) -> None:
        message = _decode_frame(frame)
        if message.type != "serverNewMessage":
            return  # joins, leaves
        phase, sender_text, seq_text, sent_text, _ = message.payload.text.split(" ", 4)
        if phase == "w":
            self.barrier_left -= 1
            if self.barrier_left <= 0:
                self.progress.set()
            return
        now = time.monotonic()
        latency = now - float(sent_text)
        self.latencies.append(latency)
        sender, seq = int(sender_text), int(seq_text)
        gateways = len(self.urls)
        if gateways > 1:  # client i is on gateway i % gateways
            same = sender % gateways == client.index % gateways
            (self.within if same else self.across).append(latency)
        slot = sender * self.params.messages + seq
        if not self._seen[slot]:
            self._seen[slot] = 1
            self.first_left -= 1
            if self.first_left == 0:
                self.all_accepted = now
        if client.next_seq.get(sender, 0) != seq:
            client.out_of_order += 1
        client.next_seq[sender] = seq + 1
        client.measured += 1
        self.last_delivery = now
        self.measured_left -= 1
        if self.measured_left <= 0:
            self.progress.set()


# -- one configuration -----------------------------------------------------------


@dataclass
class Result:
    deployment: Deployment
    accept_s: float
    wall_s: float
    client_cpu_s: float
    gateway_cpu_s: float | None
    infra_cpu_s: float | None
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    deliveries: int
    sent: int
    warnings: list[dict[str, Any]]
    #: With several gateways: p50 within one gateway and across two (ms).
    hop_p50_ms: tuple[float, float] | None = None

    @property
    def messages_per_s(self) -> float:
        return self.sent / self.accept_s

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.wall_s

    @property
    def server_cpu_per_delivery_us(self) -> float | None:
        """CPU of every server process (gateways, NATS, rooms) per delivery, in µs."""
        cpu = _total([self.gateway_cpu_s, self.infra_cpu_s or 0.0])
        return None if cpu is None or not self.deliveries else cpu / self.deliveries * 1e6


async def run_deployment(deployment: Deployment, params: Params) -> Result:
    async with deployed(deployment, params) as running, contextlib.AsyncExitStack() as stack:
        urls = [f"ws://{LOOPBACK}:{g.port}/ws/chat/{ROOM}" for g in running.gateways]
        fleet = Fleet(params, urls)
        try:
            await fleet.connect(stack)
            await fleet.barrier()
            cpu0, gw0, infra0 = time.process_time(), running.gateway_cpu(), running.infra_cpu()
            accept_s, wall_s = await fleet.measure()
            cpu1, gw1, infra1 = time.process_time(), running.gateway_cpu(), running.infra_cpu()
        finally:
            # All at once, before the exit stack would close them one by one.
            await fleet.close()
        fleet.verify()
        check_logs(running)
        q = percentiles(fleet.latencies)
        return Result(
            deployment=deployment,
            accept_s=accept_s,
            wall_s=wall_s,
            client_cpu_s=cpu1 - cpu0,
            gateway_cpu_s=_delta(gw0, gw1),
            infra_cpu_s=_delta(infra0, infra1),
            p50_ms=q[49] * 1e3,
            p95_ms=q[94] * 1e3,
            p99_ms=q[98] * 1e3,
            max_ms=max(fleet.latencies) * 1e3,
            deliveries=len(fleet.latencies),
            sent=params.sent,
            hop_p50_ms=(
                (percentiles(fleet.within)[49] * 1e3, percentiles(fleet.across)[49] * 1e3)
                if fleet.within and fleet.across
                else None
            ),
            warnings=[w for g in running.gateways for w in g.problems()],
        )


def percentiles(samples: Sequence[float]) -> list[float]:
    """The 99 cut points between percentiles (any number of samples)."""
    data = list(samples) * 2 if len(samples) < 2 else samples
    return statistics.quantiles(data, n=100, method="inclusive")


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def check_logs(running: Running) -> None:
    for gateway in running.gateways:
        slow = gateway.events("pachinko.slow_consumer")
        if slow:
            raise BenchmarkFailed(f"{gateway.name}: {slow} slow-consumer (4001) disconnects")
        if gateway.returncode is not None:
            raise BenchmarkFailed(f"{gateway.name} exited:\n{gateway.tail()}")


# -- report ----------------------------------------------------------------------


def render(results: Sequence[Result]) -> str:
    base = next((r for r in results if r.deployment.key == BASELINE), results[0])
    headers = [
        "configuration",
        "wall s",
        "messages/s",
        "deliveries/s",
        "x baseline",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p50 x base",
        "client CPU s",
        "gateways CPU s",
        "nats+rooms CPU s",
        "server CPU µs/delivery",
    ]
    rows = [
        [
            r.deployment.label,
            f"{r.wall_s:.2f}",
            f"{r.messages_per_s:,.0f}",
            f"{r.deliveries_per_s:,.0f}",
            f"{r.deliveries_per_s / base.deliveries_per_s:.2f}",
            f"{r.p50_ms:.1f}",
            f"{r.p95_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.p50_ms / base.p50_ms:.2f}" if base.p50_ms > 0 else "-",
            f"{r.client_cpu_s:.2f}",
            _seconds(r.gateway_cpu_s),
            _seconds(r.infra_cpu_s) if r.deployment.backend == "nats" else "-",
            _micros(r.server_cpu_per_delivery_us),
        ]
        for r in results
    ]
    return table(headers, rows) + _durability_cost(results) + _hop_cost(results)


def _micros(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _durability_cost(results: Sequence[Result]) -> str:
    """Pairs that differ in one thing, same run: what storing, and what ASGI, costs."""
    by_key = {r.deployment.key: r for r in results}
    pairs = (
        ("library writing the sockets vs plain ASGI", "memory-history", "memory-asgi"),
        ("library writing the sockets vs plain ASGI", "nats", "nats-asgi"),
        (
            "library writing the sockets vs uvicorn websockets",
            "memory-history",
            "memory-websockets",
        ),
        ("library writing the sockets vs uvicorn wsproto", "memory-history", "memory-wsproto"),
        ("history on vs off", "memory-history", "memory"),
        ("history on vs off", "nats", "nats-live"),
    )
    lines = []
    for what, first, second in pairs:
        on, off = by_key.get(first), by_key.get(second)
        if on is None or off is None:
            continue
        label = f"{what} ({on.deployment.backend}):"
        if off.p50_ms <= 0:
            lines.append(f"{label} no latency samples")
            continue
        cpu_on, cpu_off = on.server_cpu_per_delivery_us, off.server_cpu_per_delivery_us
        cpu = f", {cpu_on / cpu_off:.2f}x server CPU per delivery" if cpu_on and cpu_off else ""
        lines.append(
            f"{label} {on.deliveries_per_s / off.deliveries_per_s:.2f}x deliveries/s, "
            f"{on.p50_ms / off.p50_ms:.2f}x p50 latency{cpu}"
        )
    return "".join(f"\n{line}" for line in lines)


def _hop_cost(results: Sequence[Result]) -> str:
    """With two gateways: what a delivery across gateways adds to one within a gateway."""
    lines = []
    for r in results:
        if r.hop_p50_ms is None:
            continue
        within, across = r.hop_p50_ms
        lines.append(
            f"cross-gateway hop ({r.deployment.key}): p50 {within:.1f} ms within a gateway, "
            f"{across:.1f} ms across gateways: {across - within:+.1f} ms"
        )
    return "".join(f"\n{line}" for line in lines)


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


NOTES: Final = """\
wall s: first send to last delivery. messages/s: messages / seconds until every
message had reached at least one recipient (the rate the gateways took messages in
and fanned them out). deliveries/s: messages x recipients / wall s. x baseline:
deliveries/s relative to the baseline (above 1 is faster); p50 x base: median
latency relative to the baseline (above 1 is slower). CPU s: CPU time used during
the measured run; client CPU s close to wall s means the benchmark's own client
process (one event loop) was a bottleneck, and the sum of the CPU columns close to
wall s x CPUs means the machine was. Senders that send back to back (no --rate)
have all their frames written at once (TCP buffers them), so latency is then
mostly time queued behind earlier messages; use --rate for latency below
saturation."""


def print_header(params: Params) -> None:
    print("Fan-out benchmark: real gateway processes, real WebSocket clients, one room")
    print(*machine_facts(), sep="\n")
    print(
        f"params:  {params.clients} clients, {params.senders} senders x {params.messages} "
        f"messages = {params.sent:,} messages, {params.deliveries:,} deliveries per "
        f"configuration; "
        + (f"{params.rate:g} msg/s per sender" if params.rate else "senders back to back")
        + f"; warm-up {params.warmup}/sender; text {params.text_chars} chars; "
        f"outbound queue {params.queue_messages} frames; bound {params.timeout_s:g}s per wait"
    )
    print(f"configs: {', '.join(DEPLOYMENTS[k].label for k in params.configs)}")
    print(flush=True)


async def main_async(params: Params) -> list[Result]:
    results = []
    for key in params.configs:
        result = await run_deployment(DEPLOYMENTS[key], params)
        print(
            f"  {result.deployment.label}: {result.wall_s:.2f}s, "
            f"{result.deliveries:,} deliveries verified",
            flush=True,
        )
        if result.warnings:
            names = sorted({str(w.get("event")) for w in result.warnings})
            print(f"    gateways logged {len(result.warnings)} warning(s): {', '.join(names)}")
        results.append(result)
    return results


def parse_args(argv: Sequence[str] | None = None) -> Params:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__)
    parser.add_argument("--clients", type=int, default=200, help="clients in the room")
    parser.add_argument("--messages", type=int, default=250, help="messages per sender")
    parser.add_argument("--senders", type=int, default=4, help="clients that send")
    parser.add_argument("--warmup", type=int, default=5, help="barrier messages per sender")
    parser.add_argument("--text-chars", type=int, default=100, help="chat text length")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="messages/s per sender; 0 (default): back to back, as fast as the server takes",
    )
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=30.0, help="bound on each wait (s)")
    parser.add_argument(
        "--configs",
        default=",".join(k for k in DEPLOYMENTS if k not in ON_REQUEST),
        help=f"comma-separated subset of {','.join(DEPLOYMENTS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run with small numbers")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.messages, args.senders, args.warmup = 20, 50, 2, 2
    configs = tuple(c.strip() for c in args.configs.split(",") if c.strip())
    unknown = [c for c in configs if c not in DEPLOYMENTS]
    if unknown or not configs:
        parser.error(f"unknown configuration(s) {unknown}; choose from {list(DEPLOYMENTS)}")
    if not 1 <= args.senders <= args.clients or args.messages < 1 or args.warmup < 1:
        parser.error("need 1 <= senders <= clients, messages >= 1, warmup >= 1")
    if args.text_chars < 40:
        parser.error("--text-chars must be at least 40 (room for the timestamp)")
    return Params(
        clients=args.clients,
        messages=args.messages,
        senders=args.senders,
        warmup=args.warmup,
        text_chars=args.text_chars,
        rate=max(0.0, args.rate),
        connect_concurrency=max(1, args.connect_concurrency),
        timeout_s=args.timeout,
        configs=configs,
    )


def _scrub_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """CHAT_* variables of the caller's shell would leak into the services."""
    return {k: v for k, v in environ.items() if not k.startswith("CHAT_")}


def main(argv: Sequence[str] | None = None) -> int:
    params = parse_args(argv)
    clean = _scrub_environment(os.environ)
    os.environ.clear()
    os.environ.update(clean)
    print_header(params)
    started = time.monotonic()
    try:
        results = run(main_async(params))
    except (BenchmarkFailed, AssertionError) as exc:
        # AssertionError: a service from tests.system.cluster did not start.
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print()
    print(render(results))
    print()
    print(NOTES)
    print(f"\ntotal run time {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
