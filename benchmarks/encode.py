"""Micro-benchmark of the fan-out hot path, in process and without sockets.

``WebSocketConnectionManager.deliver`` hands one message to K local members: it
decodes the bytes to text once and offers that same ``str`` to every member's
outbound queue. This measures it over real :class:`falcon_pachinko.Connection`
objects wrapping a fake socket that accepts every send, against a naive baseline
that encodes the message dict with ``json.dumps`` once per recipient, and prints
ns per delivery for both and their ratio.

Only the synchronous fan-out is timed (the one encode included for the
encode-once variant); the connections' writer tasks drain the queues between
rounds, outside the timed region, so every round starts with empty queues as in a
healthy room. The garbage collector is paused while timing, as ``timeit`` does.

    python -m benchmarks.encode [--connections 10,100,1000] [--deliveries N] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from falcon_pachinko import Connection, ConnectionLimits, WebSocketConnectionManager

from . import BenchmarkFailed, machine_facts, run, table

ROOM: Final = "bench"
DRAIN_BOUND_S: Final = 5.0

_encoder: Final = msgspec.json.Encoder()


class _Counter:
    """Frames the fake sockets were handed, all sockets together."""

    def __init__(self) -> None:
        self.sent = 0


class NullSocket:
    """Stands in for the ``falcon.asgi.WebSocket`` a ``Connection`` wraps.

    Every send succeeds at once; the last payload is kept so that the benchmark
    can check what each recipient got (and whether recipients share one object).
    """

    def __init__(self, counter: _Counter) -> None:
        self.subprotocols: tuple[str, ...] = ()
        self.last: str | bytes | None = None
        self._counter = counter

    async def accept(self, subprotocol: str | None = None) -> None:
        return None

    async def send_text(self, payload: str) -> None:
        self.last = payload
        self._counter.sent += 1

    async def send_data(self, payload: bytes) -> None:
        self.last = payload
        self._counter.sent += 1

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        return None


@dataclass
class Room:
    """K accepted connections, all members of :data:`ROOM` on one manager."""

    manager: WebSocketConnectionManager
    connections: list[Connection]
    sockets: list[NullSocket]
    counter: _Counter

    async def drain(self, expected: int) -> None:
        """Let the writer tasks run until the sockets got ``expected`` frames in all."""
        async with asyncio.timeout(DRAIN_BOUND_S):
            while self.counter.sent < expected:
                await asyncio.sleep(0)

    async def close(self) -> None:
        await self.manager.stop()


async def build_room(k: int, rounds: int) -> Room:
    # The queue bound is generous: this measures fan-out, not overflow handling.
    limits = ConnectionLimits(max_queue_messages=max(1024, rounds + 16))
    manager = WebSocketConnectionManager(limits=limits)
    await manager.start()
    counter = _Counter()
    connections: list[Connection] = []
    sockets: list[NullSocket] = []
    for _ in range(k):
        sock = NullSocket(counter)
        conn = Connection(sock, limits)  # type: ignore[arg-type]
        manager.register(conn)
        await manager.join_room(conn, ROOM)
        await conn.accept()
        connections.append(conn)
        sockets.append(sock)
    return Room(manager, connections, sockets, counter)


def message(text_chars: int) -> dict[str, Any]:
    """A chat message as the gateway produces it (``serverNewMessage``)."""
    text = ("lorem ipsum dolor sit amet " * (text_chars // 27 + 1))[:text_chars]
    return {"type": "serverNewMessage", "payload": {"user": "Alice", "text": text}}


# -- the variants: each hands one message to every member ---------------------

Fanout = Callable[[Room, dict[str, Any]], None]


def encode_once_shared(room: Room, msg: dict[str, Any]) -> None:
    """What the library does: encode once where produced, ``deliver`` the bytes."""
    room.manager.deliver(ROOM, _encoder.encode(msg), None)


def json_dumps_per_recipient(room: Room, msg: dict[str, Any]) -> None:
    """Naive baseline: ``json.dumps`` the dict for every recipient."""
    for conn in room.connections:
        conn.offer_text(json.dumps(msg))


def msgspec_per_recipient(room: Room, msg: dict[str, Any]) -> None:
    """For reference: a fast encoder, still once per recipient."""
    for conn in room.connections:
        conn.offer_text(_encoder.encode(msg).decode())


@dataclass(frozen=True)
class Variant:
    label: str
    fanout: Fanout
    shares_text: bool


BASELINE: Final = Variant("json.dumps per recipient (baseline)", json_dumps_per_recipient, False)
VARIANTS: Final = (
    BASELINE,
    Variant("msgspec per recipient", msgspec_per_recipient, False),
    Variant("encode once + manager.deliver", encode_once_shared, True),
)


async def measure(room: Room, variant: Variant, msg: dict[str, Any], rounds: int) -> float:
    """ns per delivery of ``variant`` over ``rounds`` messages to every member."""
    k = len(room.connections)
    start_count = room.counter.sent
    elapsed = 0
    gc.collect()
    gc.disable()
    try:
        for r in range(1, rounds + 1):
            t0 = time.perf_counter_ns()
            variant.fanout(room, msg)
            elapsed += time.perf_counter_ns() - t0
            await room.drain(start_count + r * k)
    finally:
        gc.enable()
    check(room, variant, msg)
    return elapsed / (rounds * k)


def check(room: Room, variant: Variant, msg: dict[str, Any]) -> None:
    """Every member got the message; shared variants hand out one object to all."""
    texts = [sock.last for sock in room.sockets]
    if any(not isinstance(t, str) or json.loads(t) != msg for t in texts):
        raise BenchmarkFailed(f"{variant.label}: a member did not receive the message")
    distinct = len({id(t) for t in texts})
    if variant.shares_text and distinct != 1:
        raise BenchmarkFailed(f"{variant.label}: members got {distinct} distinct strings")


@dataclass
class Row:
    k: int
    variant: Variant
    samples: list[float]

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


async def bench_k(k: int, deliveries: int, repeat: int, msg: dict[str, Any]) -> list[Row]:
    rounds = max(10, deliveries // k)
    room = await build_room(k, rounds)
    try:
        rows = [Row(k, v, []) for v in VARIANTS]
        await measure(room, VARIANTS[-1], msg, max(1, rounds // 10))  # warm-up
        for _ in range(repeat):  # interleaved, so that drift hits every variant alike
            for row in rows:
                row.samples.append(await measure(room, row.variant, msg, rounds))
        return rows
    finally:
        await room.close()


def render(rows: Sequence[Row]) -> str:
    baselines = {r.k: r.best for r in rows if r.variant is BASELINE}
    body = [
        [
            str(r.k),
            r.variant.label,
            f"{r.best:,.0f}",
            f"{r.median:,.0f}",
            f"{baselines[r.k] / r.best:.2f}x",
        ]
        for r in rows
    ]
    headers = ["K", "variant", "ns/delivery (best)", "(median)", "speed vs baseline"]
    # The table helper left-aligns only the first column; K reads fine that way.
    return table(headers, body)


async def main_async(args: argparse.Namespace) -> list[Row]:
    msg = message(args.text_chars)
    rows: list[Row] = []
    for k in args.connections:
        rows.extend(await bench_k(k, args.deliveries, args.repeat, msg))
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.encode", description=__doc__)
    parser.add_argument(
        "--connections",
        type=_int_list,
        default=[10, 100, 1000],
        help="comma-separated room sizes K (default 10,100,1000)",
    )
    parser.add_argument("--deliveries", type=int, default=50_000, help="deliveries per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per variant")
    parser.add_argument("--text-chars", type=int, default=100, help="chat text length")
    parser.add_argument("--quick", action="store_true", help="a smoke run with small numbers")
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.deliveries, args.repeat = [10, 100], 5_000, 2
    if min(args.connections) < 1 or args.deliveries < 1 or args.repeat < 1:
        parser.error("--connections, --deliveries and --repeat must be positive")
    return args


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print("Encode micro-benchmark: one message handed to K members of a room, in process")
    print(*machine_facts(), sep="\n")
    print(
        f"params:  K={','.join(map(str, args.connections))}, ~{args.deliveries:,} deliveries "
        f"per measurement, {args.repeat} measurements per variant, "
        f"text {args.text_chars} chars, GC paused while timing"
    )
    print()
    try:
        rows = run(main_async(args))
    except (BenchmarkFailed, TimeoutError) as exc:
        print(f"FAILED: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    print(render(rows))
    print()
    print(
        "speed vs baseline = baseline ns/delivery / variant ns/delivery (best of runs); "
        "above 1 is faster."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
