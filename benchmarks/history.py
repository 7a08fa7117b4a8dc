"""History reads on JetStream: the mechanism ``NatsHistory`` uses against the others.

R rooms of M messages each (default 10 x 1000, 250 bytes) are appended through
:class:`~falcon_pachinko.backends.nats.NatsHistory`, interleaved at random, into
one file stream on a real ``nats-server``. Then, on one room, each way of
answering the same question is timed (median and best of N runs) next to a
baseline from the same run, and every answer is checked against the others:

* **after a cursor** (the first L messages after a ``seq`` in the middle of the
  room): L single direct gets one after the other (baseline), an ordered push
  consumer, an ephemeral pull consumer, and ``NatsHistory.after`` (one batch
  direct get);
* **latest** (the last L messages): the whole room in one batch direct get, keeping
  the last L (baseline), L ``multi_last`` direct gets stepping back, and
  ``NatsHistory.latest`` (a counted seek, then one batch); and the same before a
  ``seq`` in the middle of the room;
* **has**: one direct get by ``seq``.

    python -m benchmarks.history [--rooms R] [--messages M] [--limit L] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from falcon_pachinko.backends.nats import NatsHistory, NatsHistoryConfig
from falcon_pachinko.subjects import Subjects
from falcon_pachinko.testing.nats import nats_server

from . import BenchmarkFailed, machine_facts, run, table

READ_BOUND_S: Final = 10.0
_encoder: Final = msgspec.json.Encoder()


@dataclass(frozen=True)
class Params:
    rooms: int
    messages: int
    size: int
    limit: int
    runs: int


@dataclass
class Row:
    label: str
    samples: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def best_ms(self) -> float:
        return min(self.samples) * 1000


Read = Callable[[], Awaitable[list[int]]]


async def measure(label: str, read: Read, runs: int, expected: list[int] | None) -> Row:
    """Time ``read`` ``runs`` times (after one warm-up); check it answers ``expected``."""
    got = await read()
    if expected is not None and got != expected:
        raise BenchmarkFailed(f"{label}: read {len(got)} seqs, not the {len(expected)} expected")
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        async with asyncio.timeout(READ_BOUND_S):
            await read()
        samples.append(time.perf_counter() - t0)
    return Row(label, samples)


async def fill(history: NatsHistory, params: Params) -> dict[str, list[int]]:
    """Append every message, rooms interleaved at random; the seqs of each room."""
    rng = random.Random(7)
    order = [r for r in range(params.rooms) for _ in range(params.messages)]
    rng.shuffle(order)
    text = "x" * max(0, params.size - 40)
    seqs: dict[str, list[int]] = {f"room-{r}": [] for r in range(params.rooms)}
    for start in range(0, len(order), 200):
        chunk = order[start : start + 200]
        appended = await asyncio.gather(
            *(
                history.append(f"room-{r}", _encoder.encode({"type": "m", "text": text, "n": i}))
                for i, r in enumerate(chunk, start)
            )
        )
        for r, result in zip(chunk, appended, strict=True):
            seqs[f"room-{r}"].append(result.position.seq)
    for room in seqs:
        seqs[room].sort()
    return seqs


def seq_of(msg: Any) -> int:
    return int(msg.headers["Nats-Sequence"])


async def bench(params: Params) -> list[tuple[str, list[Row]]]:
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        async with nats_server(Path(tmp)) as server:
            nc = await nats.connect(server.url)
            try:
                return await bench_on(nc, params)
            finally:
                await nc.close()


class Reads:
    """Every way of reading one room of the filled stream, each returning the seqs read."""

    def __init__(self, nc: Client, history: NatsHistory, room: str, seqs: list[int], limit: int):
        self.nc = nc
        self.js = nc.jetstream(timeout=READ_BOUND_S)
        self.history = history
        self.room = room
        self.subject = history.subjects.stored(room)
        self.direct = f"$JS.API.DIRECT.GET.{history.stream}"
        self.seqs = seqs
        self.limit = limit
        #: A cursor in the middle of the room.
        self.middle = seqs[len(seqs) // 2]
        #: Direct gets made, for counting those of one read.
        self.asks = 0

    # -- after a cursor --

    async def single_gets(self) -> list[int]:
        out, seq = [], self.middle + 1
        for _ in range(self.limit):
            req = _encoder.encode({"seq": seq, "next_by_subj": self.subject})
            msg = await self.nc.request(self.direct, req, timeout=READ_BOUND_S)
            out.append(seq_of(msg))
            seq = out[-1] + 1
        return out

    async def ordered_consumer(self) -> list[int]:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.middle + 1
        )
        sub = await self.js.subscribe(self.subject, ordered_consumer=True, config=config)
        try:
            return [
                (await sub.next_msg(READ_BOUND_S)).metadata.sequence.stream
                for _ in range(self.limit)
            ]
        finally:
            await sub.unsubscribe()

    async def pull_consumer(self) -> list[int]:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.middle + 1,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=5.0,
            mem_storage=True,
        )
        psub = await self.js.pull_subscribe(self.subject, durable=None, config=config)
        try:
            got: list[int] = []
            while len(got) < self.limit:
                batch = await psub.fetch(self.limit - len(got), timeout=READ_BOUND_S)
                got += [m.metadata.sequence.stream for m in batch]
            return got
        finally:
            await psub.unsubscribe()

    async def batch_after(self) -> list[int]:
        page = await self.history.after(self.room, self.middle, limit=self.limit)
        return [m.position.seq for m in page.messages]

    # -- the last ones --

    async def whole_room(self, before: int | None = None) -> list[int]:
        page = await self.history.after(self.room, 0, limit=len(self.seqs) + 1)
        kept = [m.position.seq for m in page.messages if before is None or m.position.seq < before]
        return kept[-self.limit :]

    async def step_back(self) -> list[int]:
        out: list[int] = []
        upper: int | None = None
        for _ in range(self.limit):
            request: dict[str, Any] = {"multi_last": [self.subject], "batch": 1}
            if upper is not None:
                request["up_to_seq"] = upper
            reply = await self.history._ask(request)
            if not reply.messages:
                break
            out.append(seq_of(reply.messages[0]))
            upper = out[-1] - 1
        return out[::-1]

    async def counted_seek(self, before: int | None = None) -> list[int]:
        page = await self.history.latest(self.room, limit=self.limit, before=before)
        return [m.position.seq for m in page.messages]

    async def has(self) -> list[int]:
        return [self.middle] if await self.history.has(self.room, self.middle) else []

    async def direct_gets_of(self, read: Read) -> int:
        """How many direct gets ``read`` makes."""
        ask = self.history._ask

        async def counting_ask(*args: Any, **kwargs: Any) -> Any:
            self.asks += 1
            return await ask(*args, **kwargs)

        self.asks = 0
        self.history._ask = counting_ask  # type: ignore[method-assign]
        try:
            await read()
        finally:
            self.history._ask = ask  # type: ignore[method-assign]
        return self.asks


async def bench_on(nc: Client, params: Params) -> list[tuple[str, list[Row]]]:
    config = NatsHistoryConfig(max_messages_per_room=params.messages)
    history = NatsHistory(nc, Subjects("chat"), "bench", config, request_timeout_s=READ_BOUND_S)
    await history.start()
    seqs = await fill(history, params)
    room = f"room-{params.rooms // 2}"
    reads = Reads(nc, history, room, seqs[room], params.limit)
    limit, runs, few = params.limit, params.runs, max(3, params.runs // 3)
    middle = reads.middle
    after = [s for s in reads.seqs if s > middle][:limit]
    latest = reads.seqs[-limit:]
    before = [s for s in reads.seqs if s < middle][-limit:]

    after_rows = [
        await measure(f"{limit} single direct gets (baseline)", reads.single_gets, few, after),
        await measure("ordered push consumer", reads.ordered_consumer, few, after),
        await measure("ephemeral pull consumer", reads.pull_consumer, few, after),
        await measure("NatsHistory.after: one batch direct get", reads.batch_after, runs, after),
    ]
    latest_rows = [
        await measure(
            f"whole room ({len(reads.seqs)}) in one batch, keep {limit} (baseline)",
            reads.whole_room,
            runs,
            latest,
        ),
        await measure(f"{limit} multi_last gets stepping back", reads.step_back, few, latest),
        await measure("NatsHistory.latest: counted seek + batch", reads.counted_seek, runs, latest),
    ]
    before_rows = [
        await measure(
            "whole room in one batch, keep those before (baseline)",
            lambda: reads.whole_room(middle),
            runs,
            before,
        ),
        await measure(
            "NatsHistory.latest(before=): counted seek + batch",
            lambda: reads.counted_seek(middle),
            runs,
            before,
        ),
    ]
    has_rows = [await measure("NatsHistory.has: one direct get by seq", reads.has, runs, [middle])]
    latest_asks = await reads.direct_gets_of(reads.counted_seek)
    before_asks = await reads.direct_gets_of(lambda: reads.counted_seek(middle))
    await history.stop()
    return [
        (f"the first {limit} after a cursor", after_rows),
        (f"the last {limit} (NatsHistory.latest: {latest_asks} direct gets)", latest_rows),
        (f"the last {limit} before a seq ({before_asks} direct gets)", before_rows),
        ("one message", has_rows),
    ]


def report(params: Params, groups: Sequence[tuple[str, list[Row]]]) -> str:
    lines = [
        *machine_facts(),
        f"params:  {params.rooms} rooms x {params.messages} messages of ~{params.size} bytes, "
        f"interleaved in one file stream; limit {params.limit}; {params.runs} runs",
        "",
    ]
    for title, rows in groups:
        baseline = rows[0].median_ms
        cells = [
            [
                row.label,
                f"{row.median_ms:.2f}",
                f"{row.best_ms:.2f}",
                f"{baseline / row.median_ms:.1f}",
            ]
            for row in rows
        ]
        lines += [title, table(["read", "median ms", "best ms", "x baseline"], cells), ""]
    lines.append("x baseline: the baseline's median over this one's (above 1 is faster).")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> Params:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--messages", type=int, default=1000, help="per room")
    parser.add_argument("--size", type=int, default=250, help="bytes per message")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        return Params(rooms=3, messages=100, size=args.size, limit=10, runs=3)
    return Params(args.rooms, args.messages, args.size, args.limit, args.runs)


def main(argv: Sequence[str] | None = None) -> int:
    params = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        groups = run(bench(params))
    except BenchmarkFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(report(params, groups))
    return 0


if __name__ == "__main__":
    sys.exit(main())
