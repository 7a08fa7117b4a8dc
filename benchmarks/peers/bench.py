"""The peer fan-out benchmark: the chat gateway beside other stacks, same protocol, same load.

See :mod:`benchmarks.peers` and ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from array import array
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from tests.system.cluster import cluster, free_port

from falcon_pachinko.testing.nats import NatsServer

from .. import BenchmarkFailed, machine_facts, run, table
from ..fanout import _PRESENCE, _TICKS, GatewayProcess, base_gateway_env, process_cpu_s
from .loadgen import TEXT_CHARS, worker_main

LOOPBACK: Final = "127.0.0.1"
ROOT: Final = Path(__file__).resolve().parents[2]
RESULTS: Final = ROOT / "bench" / "results"
#: A step passes when every message was delivered and p99 latency is at most this.
P99_BOUND_MS: Final = 100.0
CPU_RATES: Final = (20_000, 80_000)


# -- what is measured ------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    what: str
    protocol: str = "chat"  # or "socketio"


PEERS: Final = {
    p.key: p
    for p in (
        Peer("product", "product", "gateway + rooms + nats-server, CHAT_HISTORY=true"),
        Peer("memory", "memory", "gateway alone, CHAT_BACKEND=memory, history on"),
        Peer("memory-asgi", "memory, plain ASGI", "the same on uvicorn's websockets-sansio"),
        Peer("granian", "memory, on Granian", "the gateway's app on Granian, plain ASGI"),
        Peer("picows-gateway", "memory, on picows", "the gateway's app on a picows bridge"),
        Peer("websockets", "websockets", "bare websockets 17 + uvloop, broadcast()"),
        Peer("picows", "picows", "picows + uvloop, synchronous writes"),
        Peer("falcon", "falcon", "Falcon + uvicorn, hand-written rooms"),
        Peer("socketio", "socketio", "python-socketio x2 + Redis manager", "socketio"),
    )
}
QUICK_PEERS: Final = ("memory", "websockets")


@dataclass(frozen=True)
class Scenario:
    rooms: int
    clients: int  # per room, senders included
    senders: int  # per room


SCENARIOS: Final = {"10x20": Scenario(10, 20, 5), "4x250": Scenario(4, 250, 5)}


@dataclass(frozen=True)
class Params:
    scenario_key: str
    scenario: Scenario
    rates: tuple[int, ...]
    step_s: float
    drain_s: float
    idle_clients: int
    workers: int
    connect_concurrency: int
    min_ratio: float
    peers: tuple[str, ...]
    quick: bool
    json_path: Path | None


@dataclass
class Step:
    offered: int
    duration_s: float = 0.0
    sent: int = 0
    expected: int = 0
    received: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    server_cpu_s: float | None = None
    cpu_us_per_delivery: float | None = None
    load_cpu_s: float = 0.0
    send_lag_ms: float = 0.0
    #: Busy share of the server CPU and the load CPU during the step (every
    #: process and the kernel's softirq work: loopback TCP is partly charged there).
    server_cpu_busy: float | None = None
    load_cpu_busy: float | None = None
    #: CPU used meanwhile by processes that are not the benchmark's (in CPUs): a
    #: shared machine's other work, which skews the step.
    other_cpus: float | None = None
    wall_s: float = 0.0
    rss_mb: float | None = None
    closed: int = 0
    errors: int = 0
    stray: int = 0
    passed: bool = False
    why: str = ""
    short: str = ""  # the reason, in a few words

    @property
    def ratio(self) -> float:
        return self.received / self.expected if self.expected else 0.0


@dataclass
class PeerResult:
    key: str
    label: str
    what: str
    skipped: str | None = None
    failed: str | None = None
    pids: dict[str, int] = field(default_factory=dict)
    pinning: dict[str, str] = field(default_factory=dict)
    idle_clients: int = 0
    idle_connected: int = 0
    connect_s: float | None = None
    idle_rss_before_mb: float | None = None
    idle_rss_after_mb: float | None = None
    idle_mb_per_1k: float | None = None
    #: Per process: RSS MB before and after the idle clients connected.
    idle_rss_by_process: dict[str, tuple[float, float]] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    @property
    def knee(self) -> int | None:
        """The highest offered rate passed before the first failed step."""
        knee = None
        for step in self.steps:
            if not step.passed:
                break
            knee = step.offered
        return knee

    def step_at(self, rate: int) -> Step | None:
        """The step run at ``rate``, passed or not."""
        return next((s for s in self.steps if s.offered == rate), None)

    def cpu_cell(self, rate: int) -> str:
        """CPU µs/delivery at ``rate``; ``*`` marks a step that failed (above the knee)."""
        step = self.step_at(rate)
        if step is None or step.cpu_us_per_delivery is None:
            return "-"
        return f"{step.cpu_us_per_delivery:,.1f}" + ("" if step.passed else "*")


# -- server processes ------------------------------------------------------------


class PeerProcess:
    """A peer server script; its port comes from its first stdout line."""

    def __init__(self, name: str, module: str, *args: str) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", f"benchmarks.peers.servers.{module}", *args]
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.lines: deque[str] = deque(maxlen=30)
        self._readers: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, ready: bytes = b"LISTENING ", timeout_s: float = 20) -> PeerProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers.append(asyncio.create_task(self._keep(self.proc.stderr)))
        try:
            async with asyncio.timeout(timeout_s):
                while line := await self.proc.stdout.readline():
                    self.lines.append(line.decode(errors="replace").rstrip())
                    if ready in line:
                        break
        except TimeoutError:
            pass
        if not self.lines or ready.decode() not in self.lines[-1]:
            await self.stop()
            raise BenchmarkFailed(f"{self.name} did not start:\n{self.tail()}")
        if ready == b"LISTENING ":
            self.port = int(self.lines[-1].split()[-1])
        self._readers.append(asyncio.create_task(self._keep(self.proc.stdout)))
        return self

    async def _keep(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    def tail(self) -> str:
        return "\n".join(self.lines)

    async def stop(self, timeout_s: float = 10) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout_s):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)


@dataclass
class Running:
    """A started server under test: where clients connect, which processes to watch."""

    urls: list[str]  # one base per server process clients are spread over
    pids: dict[str, int]

    def cpu_s(self) -> float | None:
        values = [process_cpu_s(pid) for pid in self.pids.values()]
        return None if any(v is None for v in values) else sum(v or 0.0 for v in values)

    def rss_by_process(self) -> dict[str, float]:
        return {name: (rss_kb(pid) or 0) / 1024 for name, pid in self.pids.items()}

    def rss_mb(self) -> float | None:
        values = [rss_kb(pid) for pid in self.pids.values()]
        return None if any(v is None for v in values) else sum(v or 0 for v in values) / 1024


def cpu_ticks() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) clock ticks since boot, from ``/proc/stat`` (empty elsewhere)."""
    ticks = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                numbers = [int(v) for v in values[:8]]
                idle = numbers[3] + numbers[4]  # idle + iowait
                steal = numbers[7]  # the hypervisor ran something else
                ticks[int(name[3:])] = (sum(numbers) - idle - steal, sum(numbers) - steal)
    return ticks


def task_cpu_s() -> float | None:
    """CPU seconds every process on the machine spent (user + nice + system, no softirq)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        if fields[0] == "cpu":
            return sum(int(v) for v in fields[1:4]) / _TICKS
    return None


def busy_share(before: Mapping[int, tuple[int, int]], cpu: int) -> float | None:
    """Share of ``cpu``'s time spent busy since ``before`` (any process, softirq included)."""
    after = cpu_ticks()
    if cpu not in before or cpu not in after:
        return None
    busy, total = (a - b for a, b in zip(after[cpu], before[cpu], strict=True))
    return busy / total if total else None


def rss_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def skip_reason(key: str) -> str | None:
    if key == "socketio" and shutil.which("redis-server") is None:
        return "redis-server is not on PATH (apt-get install redis-server)"
    return None


@contextlib.asynccontextmanager
async def deployed(key: str) -> AsyncIterator[Running]:
    async with contextlib.AsyncExitStack() as stack:
        if key == "product":
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-peers-"))
            chat = await stack.enter_async_context(cluster(Path(tmp), **_PRESENCE))
            rooms = await chat.rooms()
            gateway = GatewayProcess(
                "gateway", "chat_gateway", chat.env(**base_gateway_env("nats"))
            )
            chat.services.append(gateway)  # the cluster stops it
            await gateway.start()
            assert isinstance(chat.nats, NatsServer)
            nats = chat.nats.process
            assert nats is not None and gateway.proc is not None
            pids = {"gateway": gateway.pid, "chat-rooms": rooms.pid, "nats-server": nats.pid}
            yield Running([f"ws://{LOOPBACK}:{gateway.port}"], pids)
        elif key in ("memory", "memory-asgi"):
            env = base_gateway_env("memory")
            if key == "memory-asgi":
                env["CHAT_WS_PROTOCOL"] = "websockets-sansio"
            gateway = GatewayProcess("gateway", "chat_gateway", env)
            stack.push_async_callback(gateway.stop)
            await gateway.start()
            yield Running([f"ws://{LOOPBACK}:{gateway.port}"], {"gateway": gateway.pid})
        elif key == "socketio":
            redis = await _started(stack, _redis_process())
            url = f"redis://{LOOPBACK}:{redis.port}/0"
            servers = [
                await _started(
                    stack, PeerProcess(f"socketio-{i}", "socketio_server", "--redis", url)
                )
                for i in range(2)
            ]
            pids = {s.name: s.pid for s in servers} | {"redis-server": redis.pid}
            yield Running([f"ws://{LOOPBACK}:{s.port}" for s in servers], pids)
        else:
            module = _MODULES.get(key, f"{key}_server")
            server = await _started(stack, PeerProcess(key, module))
            yield Running([f"ws://{LOOPBACK}:{server.port}"], {key: server.pid})


#: Peer servers whose script is not ``<key>_server``.
_MODULES: Final = {"granian": "granian_gateway", "picows-gateway": "picows_gateway"}


def _redis_process() -> PeerProcess:
    redis = PeerProcess("redis-server", "")
    redis.port = free_port()
    redis.argv = [
        "redis-server", "--port", str(redis.port), "--bind", LOOPBACK, "--save", "",
        "--appendonly", "no", "--protected-mode", "no", "--loglevel", "notice",
    ]  # fmt: skip
    return redis


async def _started(stack: contextlib.AsyncExitStack, process: PeerProcess) -> PeerProcess:
    stack.push_async_callback(process.stop)
    if process.name == "redis-server":
        return await process.start(ready=b"Ready to accept connections")
    return await process.start()


# -- pinning ---------------------------------------------------------------------


def cpu_plan() -> tuple[int, int] | None:
    """(server CPU, load CPU): the first two usable CPUs; ``None`` with fewer."""
    try:
        usable = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return (usable[0], usable[1]) if len(usable) >= 2 else None


def pin_process(pid: int, cpu: int) -> str:
    """Pin every thread of ``pid`` to ``cpu``; returns the affinity read back."""
    tasks = Path(f"/proc/{pid}/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.exists() else [pid]:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, {cpu})
    try:
        return ",".join(str(c) for c in sorted(os.sched_getaffinity(pid)))
    except OSError:
        return "?"


# -- the load generator's workers --------------------------------------------------


class Workers:
    """K worker processes on the load CPU, one pipe each."""

    def __init__(self, count: int, plan: tuple[int, int] | None) -> None:
        self.plan = plan  # (server CPU, load CPU)
        cpu = None if plan is None else plan[1]
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs = []
        for _ in range(count):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(theirs, cpu), daemon=True)
            proc.start()
            theirs.close()
            self.pipes.append(mine)
            self.procs.append(proc)

    async def ask(self, commands: Sequence[tuple[Any, ...]], timeout_s: float) -> list[Any]:
        """Send one command to each worker, return their replies (bounded)."""
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        try:
            async with asyncio.timeout(timeout_s):
                replies = await asyncio.gather(*(asyncio.to_thread(p.recv) for p in self.pipes))
        except TimeoutError:
            raise BenchmarkFailed(f"the load generator did not answer {commands[0][0]!r}") from None
        except EOFError:
            raise BenchmarkFailed("a load generator worker died") from None
        for reply in replies:
            if reply[0] == "error":
                raise BenchmarkFailed(f"load generator: {reply[1]}")
        return replies

    def cpu_s(self) -> float:
        return sum(process_cpu_s(p.pid) or 0.0 for p in self.procs)

    async def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("exit",))
        for proc in self.procs:
            await asyncio.to_thread(proc.join, 5)
            if proc.is_alive():
                proc.kill()


# -- one server ------------------------------------------------------------------


def client_specs(
    peer: Peer, running: Running, params: Params, k: int, *, idle: bool
) -> list[list[tuple[str, int, bool]]]:
    """Per worker: (url, room, sender) for each of its clients.

    Rate mode: room r holds clients r*C .. r*C+C-1, the first S of them senders.
    Idle mode: N clients spread over the same rooms, none sending. Client i goes to
    worker i % K, and to server process (i // K) % P.
    """
    s = params.scenario
    total = params.idle_clients if idle else s.rooms * s.clients
    per_worker: list[list[tuple[str, int, bool]]] = [[] for _ in range(k)]
    for i in range(total):
        room = i % s.rooms if idle else i // s.clients
        sender = not idle and i % s.clients < s.senders
        user = f"{'idle' if idle else 'u'}{i}"
        base = running.urls[(i // k) % len(running.urls)]
        if peer.protocol == "socketio":
            url = f"{base}/socket.io/?EIO=4&transport=websocket&room=bench{room}&user={user}"
        else:
            url = f"{base}/ws/chat/bench{room}?user={user}"
        per_worker[i % k].append((url, room, sender))
    return per_worker


async def connect_all(
    workers: Workers, peer: Peer, specs: list[list[tuple[str, int, bool]]], params: Params
) -> tuple[int, float, str | None]:
    t_start = time.monotonic() + 0.1
    timeout_s = 30.0 if params.quick else 60.0
    replies = await workers.ask(
        [
            ("connect", peer.protocol, mine, params.connect_concurrency, t_start, timeout_s)
            for mine in specs
        ],
        timeout_s + 15,
    )
    ok = sum(r[1] for r in replies)
    errors = [r[3] for r in replies if r[3]]
    return ok, max(r[2] for r in replies), errors[0] if errors else None


async def idle_mode(
    workers: Workers, peer: Peer, running: Running, params: Params, result: PeerResult
) -> None:
    """Connect N clients at once (the connect storm), then the RSS they cost."""
    specs = client_specs(peer, running, params, len(workers.pipes), idle=True)
    result.idle_clients = params.idle_clients
    result.idle_rss_before_mb = running.rss_mb()
    before = running.rss_by_process()
    ok, elapsed, error = await connect_all(workers, peer, specs, params)
    result.idle_connected = ok
    try:
        if ok < params.idle_clients:
            raise BenchmarkFailed(f"idle mode: {ok} of {params.idle_clients} connected: {error}")
        result.connect_s = elapsed
        await asyncio.sleep(0.5)  # let the last joins' work settle before reading RSS
        result.idle_rss_after_mb = after = running.rss_mb()
        result.idle_rss_by_process = {
            name: (before[name], mb) for name, mb in running.rss_by_process().items()
        }
        if after is not None and result.idle_rss_before_mb is not None:
            growth = after - result.idle_rss_before_mb
            result.idle_mb_per_1k = growth / params.idle_clients * 1000
    finally:
        await workers.ask([("close",)] * len(workers.pipes), 30)


async def one_step(
    workers: Workers,
    running: Running,
    params: Params,
    senders_per_worker: Sequence[int],
    recipients: Sequence[Sequence[int]],
    tag: str,
    offered: int,
    step_s: float,
) -> Step:
    """One open-loop step at ``offered`` deliveries/s."""
    s = params.scenario
    step = Step(offered, step_s)
    messages_per_s = offered / s.clients  # every message reaches the C clients of its room
    total_senders = s.rooms * s.senders
    t_start = time.monotonic() + 0.05
    cpu0, load0, ticks0 = running.cpu_s(), workers.cpu_s(), cpu_ticks()
    all0, own0 = task_cpu_s(), time.process_time()
    sent = await workers.ask(
        [
            ("send", tag, messages_per_s * n / total_senders, step_s, t_start)
            for n in senders_per_worker
        ],
        step_s + 20,
    )
    per_room = [sum(_at(r[1], room) for r in sent) for room in range(s.rooms)]
    step.sent = sum(per_room)
    step.send_lag_ms = max(r[2] for r in sent)
    expected = [sum(n * mine[room] for room, n in enumerate(per_room)) for mine in recipients]
    drained = await workers.ask(
        [("drain", e, params.drain_s) for e in expected], params.drain_s + 20
    )
    cpu1, t_end = running.cpu_s(), time.monotonic()
    step.wall_s = t_end - t_start
    step.load_cpu_s = workers.cpu_s() - load0
    all1, own1 = task_cpu_s(), time.process_time()
    if None not in (all0, all1, cpu0, cpu1):
        ours = (cpu1 or 0) - (cpu0 or 0) + step.load_cpu_s + own1 - own0
        step.other_cpus = max(0.0, ((all1 or 0) - (all0 or 0) - ours) / step.wall_s)
    step.rss_mb = running.rss_mb()
    if workers.plan is not None:
        step.server_cpu_busy, step.load_cpu_busy = (busy_share(ticks0, c) for c in workers.plan)
    step.expected = sum(expected)
    step.received = sum(r[1] for r in drained)
    step.stray = sum(r[3] for r in drained)
    step.closed = sum(r[4] for r in drained)
    step.errors = sum(r[5] for r in drained)
    latencies = array("q")
    for reply in drained:
        latencies.frombytes(reply[2])
    _latency(step, latencies)
    if cpu0 is not None and cpu1 is not None:
        step.server_cpu_s = cpu1 - cpu0
        if step.received:
            step.cpu_us_per_delivery = step.server_cpu_s / step.received * 1e6
    _judge(step, params)
    return step


def _at(counts: Sequence[int], room: int) -> int:
    """A worker's count for ``room`` (a worker without clients there reports fewer rooms)."""
    return counts[room] if room < len(counts) else 0


def _latency(step: Step, latencies: array[int]) -> None:
    if not latencies:
        return
    ordered = sorted(latencies)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] / 1e6

    step.p50_ms, step.p95_ms, step.p99_ms, step.max_ms = at(0.50), at(0.95), at(0.99), at(1.0)


def _judge(step: Step, params: Params) -> None:
    if step.closed:
        step.why = f"{step.closed} client(s) closed by the server"
        step.short = "clients closed"
    elif step.sent < round(step.offered / params.scenario.clients * step.duration_s * 0.99):
        step.why = f"the load generator sent only {step.sent} messages (it could not keep up)"
        step.short = "load generator behind"
    elif step.ratio < params.min_ratio:
        step.why = f"delivered {step.ratio:.4f} of {step.expected:,} within {params.drain_s:g}s"
        step.short = f"delivered {step.ratio:.3f}"
    elif step.p99_ms is None or step.p99_ms > P99_BOUND_MS:
        step.why = f"p99 {_ms(step.p99_ms)} ms > {P99_BOUND_MS:g} ms"
        step.short = f"p99 {_ms(step.p99_ms)} ms"
    step.passed = not step.why
    if not step.passed and (step.load_cpu_busy or 0) >= 0.95:
        step.why += " (the load CPU was saturated: the server may do better)"


async def rate_mode(
    workers: Workers, peer: Peer, running: Running, params: Params, result: PeerResult
) -> None:
    """R rooms x C clients; a warm-up, then rate steps until one fails."""
    k = len(workers.pipes)
    specs = client_specs(peer, running, params, k, idle=False)
    wanted = sum(len(mine) for mine in specs)
    try:
        ok, _, error = await connect_all(workers, peer, specs, params)
        if ok < wanted:
            raise BenchmarkFailed(f"rate mode: {ok} of {wanted} connected: {error}")
        senders = [sum(1 for spec in mine if spec[2]) for mine in specs]
        recipients = [
            [sum(1 for spec in mine if spec[1] == room) for room in range(params.scenario.rooms)]
            for mine in specs
        ]
        warm = await one_step(
            workers, running, params, senders, recipients, "00", params.rates[0], params.step_s / 2
        )
        if warm.closed or warm.ratio < params.min_ratio:  # its latency is not judged
            raise BenchmarkFailed(f"warm-up at {params.rates[0]:,}/s failed: {warm.why}")
        for index, offered in enumerate(params.rates, start=1):
            step = await one_step(
                workers,
                running,
                params,
                senders,
                recipients,
                f"{index:02d}",
                offered,
                params.step_s,
            )
            result.steps.append(step)
            print(f"    {_step_line(step)}", flush=True)
            if not step.passed:
                break
    finally:
        await workers.ask([("close",)] * k, 30)


def _step_line(step: Step) -> str:
    verdict = "ok" if step.passed else f"FAIL: {step.why}"
    return (
        f"{step.offered:>7,}/s offered: {step.received:,}/{step.expected:,} delivered, "
        f"p50 {_ms(step.p50_ms)} p99 {_ms(step.p99_ms)} ms, "
        f"server {_num(step.cpu_us_per_delivery)} µs/delivery, "
        f"load workers {step.load_cpu_s / step.wall_s:.0%} of a CPU; "
        f"CPU busy: server {_share(step.server_cpu_busy)}, load {_share(step.load_cpu_busy)}, "
        f"other processes {_num(step.other_cpus, 2)} CPU; "
        f"{verdict}"
    )


async def measure(
    peer: Peer, workers: Workers, params: Params, plan: tuple[int, int] | None
) -> PeerResult:
    result = PeerResult(peer.key, peer.label, peer.what)
    if (reason := skip_reason(peer.key)) is not None:
        result.skipped = reason
        print(f"  {peer.label}: SKIPPED: {reason}", flush=True)
        return result
    print(f"  {peer.label} ({peer.what})", flush=True)
    try:
        async with deployed(peer.key) as running:
            result.pids = dict(running.pids)
            if plan is not None:
                result.pinning = {n: pin_process(pid, plan[0]) for n, pid in running.pids.items()}
                pins = ", ".join(
                    f"{n} {pid} -> CPU {result.pinning[n]}" for n, pid in running.pids.items()
                )
                print(f"    pinned: {pins}", flush=True)
            await idle_mode(workers, peer, running, params, result)
            print(
                f"    idle: {result.idle_connected} clients connected in "
                f"{_num(result.connect_s, 2)}s, "
                f"{_num(result.idle_mb_per_1k)} MB per 1k connections",
                flush=True,
            )
            await rate_mode(workers, peer, running, params, result)
    except (BenchmarkFailed, AssertionError) as exc:
        # AssertionError: a service from tests.system.cluster did not start.
        result.failed = str(exc)
        print(f"    FAILED: {exc}", flush=True)
    return result


# -- report ----------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _rate(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def render(results: Sequence[PeerResult], params: Params) -> str:
    falcon = next((r for r in results if r.key == "falcon" and r.connect_s), None)
    headers = [
        "server",
        "knee deliveries/s",
        "CPU µs/delivery @20k",
        "@80k",
        "idle MB/1k conns",
        f"connect s ({params.idle_clients:,})",
        "connect x falcon",
        "peak RSS MB",
        "first failed step",
        "other CPUs max",
    ]
    rows = []
    for r in results:
        if r.skipped:
            rows.append([r.label, "skipped", *["-"] * 8])
            continue
        peak = max((s.rss_mb for s in r.steps if s.rss_mb is not None), default=None)
        vs_falcon = (
            f"{r.connect_s / falcon.connect_s:.2f}"
            if falcon is not None and falcon.connect_s and r.connect_s
            else "-"
        )
        knee = _rate(r.knee) if r.steps else "failed"
        if r.steps and r.knee is None:
            knee = f"<{params.rates[0]:,}"
        if r.steps and r.knee == params.rates[-1]:
            knee = f">={knee}"
        rows.append(
            [
                r.label,
                knee,
                r.cpu_cell(CPU_RATES[0]),
                r.cpu_cell(CPU_RATES[1]),
                _num(r.idle_mb_per_1k),
                _num(r.connect_s, 2),
                vs_falcon,
                _num(peak),
                _first_failure(r),
                _num(
                    max((s.other_cpus for s in r.steps if s.other_cpus is not None), default=None),
                    2,
                ),
            ]
        )
    return table(headers, rows)


def _first_failure(r: PeerResult) -> str:
    if r.failed and not r.steps:
        return "no step passed: " + r.failed.split(":")[0]
    step = next((s for s in r.steps if not s.passed), None)
    return "none" if step is None else f"{step.offered:,}/s: {step.short}"


def ratios(results: Sequence[PeerResult], params: Params) -> list[dict[str, Any]]:
    """The ratios issue 10 names, each from this run's figures."""
    by = {r.key: r for r in results}

    def get(key: str) -> PeerResult | None:
        r = by.get(key)
        return None if r is None or r.skipped else r

    out: list[dict[str, Any]] = []
    product, sio, ws, memory, falcon = (
        get(k) for k in ("product", "socketio", "websockets", "memory", "falcon")
    )

    # 1. knee vs socket.io: a knee below the lowest step counts as "below it".
    entry: dict[str, Any] = {"name": "product knee / socketio knee", "target": ">= 8"}
    if product is None or sio is None:
        entry["note"] = _missing(by, ("product", "socketio"))
    elif product.knee is None:
        entry["note"] = "product passed no step"
    elif sio.knee is None:
        entry["value"] = None
        entry["note"] = (
            f"socketio passed no step (knee < {params.rates[0]:,}/s): "
            f"ratio > {product.knee / params.rates[0]:.1f}"
        )
        entry["met"] = product.knee / params.rates[0] >= 8
    else:
        entry["value"] = product.knee / sio.knee
        entry["met"] = entry["value"] >= 8
        if sio.knee == params.rates[-1]:
            entry["note"] = "socketio passed every step: its knee is higher, add --rates"
        elif product.knee == params.rates[-1]:
            entry["note"] = "product passed every step: a lower bound"
    out.append(entry)
    out.append(_cpu_ratio(("product", "websockets"), product, ws, "<= 1.25", 1.25, by))
    out.append(_cpu_ratio(("memory", "falcon"), memory, falcon, "<= 1.0", 1.0, by))
    idle: dict[str, Any] = {
        "name": "product gateway idle MB per 1k connections (absolute)",
        "target": "<= 20",
    }
    gateway = product.idle_rss_by_process.get("gateway") if product is not None else None
    if product is None or gateway is None or not product.idle_clients:
        idle["note"] = _missing(by, ("product",)) if product is None else "not measured"
    else:
        idle["value"] = (gateway[1] - gateway[0]) / product.idle_clients * 1000
        idle["met"] = idle["value"] <= 20
        if product.idle_mb_per_1k is not None:
            idle["note"] = f"{product.idle_mb_per_1k:.1f} for all three processes"
    out.append(idle)
    return out


def _missing(by: Mapping[str, PeerResult], keys: Sequence[str]) -> str:
    parts = []
    for key in keys:
        r = by.get(key)
        if r is None:
            parts.append(f"{key} not run")
        elif r.skipped:
            parts.append(f"{key} skipped ({r.skipped})")
    return "; ".join(parts) or "not measured"


def _cpu_ratio(
    keys: tuple[str, str],
    a: PeerResult | None,
    b: PeerResult | None,
    target: str,
    bound: float,
    by: Mapping[str, PeerResult],
) -> dict[str, Any]:
    name = f"{keys[0]} CPU per delivery / {keys[1]} CPU per delivery"
    entry: dict[str, Any] = {"name": name, "target": target}
    if a is None or b is None:
        entry["note"] = _missing(by, keys)
        return entry
    rate = CPU_RATES[0]
    x, y = a.step_at(rate), b.step_at(rate)
    if x is None or y is None or not (x.passed and y.passed):
        # Not both measured below their knee at 20k: compare where both were.
        both = [
            s.offered
            for s in a.steps
            if s.passed and (t := b.step_at(s.offered)) is not None and t.passed
        ]
        if not both:
            entry["note"] = f"no rate passed by both {a.key} and {b.key}"
            return entry
        rate = max(both)
        x, y = a.step_at(rate), b.step_at(rate)
        entry["note"] = (
            f"at {rate:,}/s, the highest rate both passed (not both passed {CPU_RATES[0]:,}/s)"
        )
    assert x is not None and y is not None
    if not x.cpu_us_per_delivery or not y.cpu_us_per_delivery:
        entry["note"] = "no CPU figures (no /proc)"
        return entry
    entry["rate"] = rate
    entry["value"] = x.cpu_us_per_delivery / y.cpu_us_per_delivery
    entry["met"] = entry["value"] <= bound
    return entry


def render_ratios(entries: Sequence[dict[str, Any]]) -> str:
    lines = []
    for e in entries:
        value = f"{e['value']:.2f}" if e.get("value") is not None else "n/a"
        if e.get("rate"):
            value += f" at {e['rate']:,}/s"
        verdict = "" if "met" not in e else (" (met)" if e["met"] else " (NOT met)")
        note = f" - {e['note']}" if e.get("note") else ""
        lines.append(f"  {e['name']}: {value}, target {e['target']}{verdict}{note}")
    return "\n".join(lines)


def write_json(
    results: Sequence[PeerResult],
    params: Params,
    entries: Sequence[dict[str, Any]],
    path: Path,
    text: str,
    busy: Mapping[str, str],
) -> None:
    def result_dict(r: PeerResult) -> dict[str, Any]:
        data = asdict(r)
        data["knee"] = r.knee
        for step, raw in zip(r.steps, data["steps"], strict=True):
            raw["ratio"] = step.ratio
        return data

    document = {
        "benchmark": "benchmarks.peers",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "busy_without_the_benchmark": dict(busy),
        "params": {
            **{k: v for k, v in asdict(params).items() if k not in ("json_path", "scenario")},
            "scenario": asdict(params.scenario),
            "text_chars": TEXT_CHARS,
            "p99_bound_ms": P99_BOUND_MS,
        },
        "results": [result_dict(r) for r in results],
        "ratios": list(entries),
        "table": text.splitlines(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


NOTES: Final = """\
knee: the highest offered rate (deliveries/s, open-loop) at which every message was
delivered (ratio >= {min_ratio:g}, within {drain:g}s of the step's end) and p99 latency was
<= {p99:g} ms; the steps stop at the first that fails. CPU µs/delivery: user+system CPU of
every server process (the product: gateway, chat-rooms, nats-server; socketio: both
servers and redis-server) during the step / deliveries received. idle MB/1k conns: RSS
growth of those processes per 1,000 connected idle clients (absolute, MiB). connect s: time
for N clients to connect, join and receive the welcome, {concurrency} handshakes in flight
per worker; the gateway also sends the roster and history and announces every join,
which the peers do not. other CPUs max: the most CPU (in CPUs) that processes
other than the benchmark's used during one of the server's steps; well above 0, the
machine was shared and that server's figures are skewed. "-": not measured."""


async def background_load(seconds: float = 1.0) -> str:
    """How busy each CPU is with nothing of the benchmark running: other work skews it."""
    before = cpu_ticks()
    await asyncio.sleep(seconds)  # a sampling window: there is no event to wait for
    shares = {cpu: busy_share(before, cpu) for cpu in sorted(before)}
    return ", ".join(f"CPU {cpu} {_share(share)}" for cpu, share in shares.items()) or "n/a"


async def main_async(params: Params) -> tuple[list[PeerResult], dict[str, str]]:
    busy = {"before": await background_load()}
    print(f"busy before the run (other processes): {busy['before']}")
    plan = cpu_plan()
    if plan is not None:
        os.sched_setaffinity(0, {plan[0]})  # servers inherit CPU 0 from here
        print(
            f"pinning: server processes on CPU {plan[0]}, load generator workers on CPU {plan[1]}"
        )
    else:
        print("pinning: none (fewer than 2 usable CPUs): servers and load share the CPU")
    workers = Workers(params.workers, plan)
    pids = ", ".join(str(p.pid) for p in workers.procs)
    print(f"load:    {params.workers} worker processes (pids {pids})")
    print(flush=True)
    results = []
    try:
        for key in params.peers:
            results.append(await measure(PEERS[key], workers, params, plan))
    finally:
        await workers.close()
    busy["after"] = await background_load()
    print(f"\nbusy after the run (other processes): {busy['after']}")
    return results, busy


def parse_args(argv: Sequence[str] | None = None) -> Params:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="10x20")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of {','.join(PEERS)} (default: all)"
    )
    parser.add_argument(
        "--rates",
        default="1000,2500,5000,10000,15000,20000,30000,40000,60000,80000,120000,160000",
        help="offered deliveries/s of the steps, ascending",
    )
    parser.add_argument("--step-s", type=float, default=3.0, help="seconds of sending per step")
    parser.add_argument("--drain-s", type=float, default=2.0, help="bound on delivery after a step")
    parser.add_argument("--idle-clients", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    parser.add_argument("--connect-concurrency", type=int, default=50, help="per worker")
    parser.add_argument("--min-ratio", type=float, default=1.0, help="delivery ratio to pass")
    parser.add_argument("--json", default="", help="results file (default: bench/results/...)")
    parser.add_argument("--no-json", action="store_true", help="write no results file")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny rates, 2 servers")
    args = parser.parse_args(argv)
    peers = tuple(p.strip() for p in args.only.split(",") if p.strip())
    if args.quick:
        args.rates, args.step_s, args.drain_s, args.idle_clients = "1000,2000", 1.0, 1.0, 100
        peers = peers or QUICK_PEERS
    peers = peers or tuple(PEERS)
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown server(s) {unknown}; choose from {list(PEERS)}")
    try:
        rates = tuple(int(r) for r in args.rates.split(","))
    except ValueError:
        parser.error("--rates: comma-separated integers")
    if not rates or any(r <= 0 for r in rates) or list(rates) != sorted(rates):
        parser.error("--rates: positive and ascending")
    if args.workers < 1 or args.idle_clients < 1 or args.step_s <= 0 or args.drain_s <= 0:
        parser.error("--workers, --idle-clients, --step-s and --drain-s must be positive")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = (
        None if args.no_json else Path(args.json or RESULTS / f"{stamp}-{args.scenario}.json")
    )
    return Params(
        scenario_key=args.scenario,
        scenario=SCENARIOS[args.scenario],
        rates=rates,
        step_s=args.step_s,
        drain_s=args.drain_s,
        idle_clients=args.idle_clients,
        workers=args.workers,
        connect_concurrency=max(1, args.connect_concurrency),
        min_ratio=args.min_ratio,
        peers=peers,
        quick=args.quick,
        json_path=json_path,
    )


def print_header(params: Params) -> None:
    s = params.scenario
    print("Peer fan-out benchmark: the chat protocol on the product and on other stacks")
    print(*machine_facts(), sep="\n")
    print(
        f"params:  scenario {params.scenario_key}: {s.rooms} rooms x {s.clients} clients, "
        f"{s.senders} senders per room; texts of {TEXT_CHARS} chars; open-loop steps of "
        f"{params.step_s:g}s at {', '.join(f'{r:,}' for r in params.rates)} deliveries/s "
        f"(drain bound {params.drain_s:g}s, pass: ratio >= {params.min_ratio:g} and "
        f"p99 <= {P99_BOUND_MS:g} ms); idle/connect mode: {params.idle_clients:,} clients"
    )
    print(f"servers: {', '.join(params.peers)}")


def main(argv: Sequence[str] | None = None) -> int:
    params = parse_args(argv)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    os.environ.clear()
    os.environ.update(clean)
    print_header(params)
    started = time.monotonic()
    try:
        results, busy = run(main_async(params))
    except BenchmarkFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    entries = ratios(results, params)
    text = f"{render(results, params)}\n\nratios (same run):\n{render_ratios(entries)}"
    print()
    print(text)
    print()
    print(
        NOTES.format(
            min_ratio=params.min_ratio,
            drain=params.drain_s,
            p99=P99_BOUND_MS,
            concurrency=params.connect_concurrency,
        )
    )
    if params.json_path is not None:
        write_json(results, params, entries, params.json_path, text, busy)
        print(f"\nresults: {params.json_path}")
    print(f"total run time {time.monotonic() - started:.1f}s")
    failed = [r.key for r in results if r.failed]
    return 1 if failed and len(failed) == len([r for r in results if not r.skipped]) else 0
