"""What one stored chat message costs on JetStream, by stream setting and publish call.

N chat messages are published one after the other, each awaited, as one sender's
are, into a stream configured as ``NatsHistory`` configures it (file storage, a
deduplication window, ``max_msgs_per_subject``, republish onto ``chat.<room>``),
on a real ``nats-server``; a subscriber on ``chat.*`` receives every republished
copy. The baseline is the library's own ``NatsHistory.append``; each other
variant publishes the same headers by hand and changes one ingredient (the
publish call, an id JetStream deduplicates on, the storage, the headers, the
republish), so its cost shows beside the baseline measured in the same run:
nats-server CPU and this process's CPU per message (``/proc`` and
``time.process_time``), and the wall time per message. The variants run in
rounds, interleaved, each on a fresh server, and each figure is the median over
the rounds, so a burst of noise on a shared machine skews one round, not one
variant.

    python -m benchmarks.jetstream [--messages N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StorageType

from falcon_pachinko.backends.nats import NatsHistory, NatsHistoryConfig
from falcon_pachinko.subjects import Subjects
from falcon_pachinko.testing.nats import nats_server

from . import BenchmarkFailed, machine_facts, run, table

BODY: Final = b'{"type":"serverNewMessage","payload":{"user":"alice","text":"' + b"x" * 64 + b'"}}'
ROOMS: Final = 10
WAIT_S: Final = 30.0


Call = Literal["library", "inbox", "js.publish", "js.publish_async"]


@dataclass(frozen=True)
class Variant:
    label: str
    call: Call = "inbox"
    storage: StorageType = StorageType.FILE
    msg_id: bool = False
    republish: bool = True
    headers: bool = True


BASELINE_LABEL: Final = "NatsHistory.append, as deployed (baseline)"
VARIANTS: Final = (
    Variant(BASELINE_LABEL, call="library"),
    Variant("by hand: publish, ack on a wildcard inbox (what append does)"),
    Variant("nats-py js.publish", call="js.publish"),
    Variant("nats-py js.publish_async, its future awaited", call="js.publish_async"),
    Variant("js.publish, Nats-Msg-Id on every message", call="js.publish", msg_id=True),
    Variant("Nats-Msg-Id on every message (deduplicated)", msg_id=True),
    Variant("memory storage", storage=StorageType.MEMORY),
    Variant("no origin/exclusion headers", headers=False),
    Variant("no republish (and no subscriber)", republish=False),
)


class _PubAck(msgspec.Struct):
    seq: int = 0


_ACK: Final = msgspec.json.Decoder(_PubAck)


@dataclass(frozen=True)
class Figures:
    variant: Variant
    server_us: float
    client_us: float
    wall_us: float


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(variant: Variant, messages: int) -> Figures:
    with tempfile.TemporaryDirectory(prefix="bench-js-") as tmp:
        async with nats_server(Path(tmp)) as server:
            proc = server.process
            if proc is None:
                raise BenchmarkFailed("nats-server did not start")
            nc = await nats.connect(server.url)
            try:
                return await _publish_all(nc, proc.pid, variant, messages)
            finally:
                await nc.close()


Publish = Callable[[int], Awaitable[None]]


async def _publish_all(nc: Client, pid: int, variant: Variant, messages: int) -> Figures:
    history = NatsHistory(nc, Subjects("chat"), "node-0123456789", NatsHistoryConfig())
    if variant.call == "library":
        await history.start()
    else:
        config = history.stream_config()
        config.storage = variant.storage
        if not variant.republish:
            config.republish = None
        await nc.jetstream().add_stream(config)
    received = 0
    all_in = asyncio.Event()

    async def count(_msg: object) -> None:
        nonlocal received
        received += 1
        if received == messages:
            all_in.set()

    if variant.republish:
        await nc.subscribe("chat.*", cb=count)
    publish = await _publisher(nc, history, variant)
    cpu0, server0, wall0 = time.process_time(), _cpu_s(pid), time.perf_counter()
    for i in range(messages):
        await publish(i)
    if variant.republish:
        try:
            await asyncio.wait_for(all_in.wait(), WAIT_S)
        except TimeoutError:
            raise BenchmarkFailed(f"{received}/{messages} republished copies arrived") from None
    cpu1, server1, wall1 = time.process_time(), _cpu_s(pid), time.perf_counter()
    scale = 1e6 / messages
    return Figures(
        variant, (server1 - server0) * scale, (cpu1 - cpu0) * scale, (wall1 - wall0) * scale
    )


def _headers(variant: Variant, i: int) -> dict[str, str]:
    """What ``NatsHistory.append`` sets, changed as the variant says."""
    headers = {"Pachinko-Origin": "node-0123456789"} if variant.headers else {}
    headers["Pachinko-Time"] = str(time.time_ns() // 1_000_000)
    if variant.msg_id:
        headers["Nats-Msg-Id"] = uuid.uuid4().hex
    else:
        headers["Pachinko-Id"] = f"0123456789abcdef-{i:x}"
    if variant.headers:
        headers["Pachinko-Exclude"] = "conn-0123"
    return headers


async def _publisher(nc: Client, history: NatsHistory, variant: Variant) -> Publish:
    """The variant's way of storing message ``i``, awaited until acknowledged."""
    if variant.call == "library":

        async def append(i: int) -> None:
            await history.append(f"room{i % ROOMS}", BODY, exclude="conn-0123")

        return append
    js = nc.jetstream()
    if variant.call == "js.publish":

        async def js_publish(i: int) -> None:
            await js.publish(f"chat._h.room{i % ROOMS}", BODY, headers=_headers(variant, i))

        return js_publish
    if variant.call == "js.publish_async":

        async def js_publish_async(i: int) -> None:
            subject = f"chat._h.room{i % ROOMS}"
            await (await js.publish_async(subject, BODY, headers=_headers(variant, i)))

        return js_publish_async
    return await _by_hand(nc, variant)


async def _by_hand(nc: Client, variant: Variant) -> Publish:
    """A plain publish acknowledged on one wildcard inbox, as ``NatsHistory.append`` does."""
    acks: dict[str, asyncio.Future[Msg]] = {}

    async def on_ack(msg: Msg) -> None:
        future = acks.pop(msg.subject.rpartition(".")[2], None)
        if future is not None and not future.done():
            future.set_result(msg)

    inbox = nc.new_inbox()
    await nc.subscribe(f"{inbox}.*", cb=on_ack)
    loop = asyncio.get_running_loop()

    async def by_hand(i: int) -> None:
        token = str(i)
        future = acks[token] = loop.create_future()
        subject = f"chat._h.room{i % ROOMS}"
        await nc.publish(subject, BODY, reply=f"{inbox}.{token}", headers=_headers(variant, i))
        async with asyncio.timeout(WAIT_S):
            if _ACK.decode((await future).data).seq < 1:
                raise BenchmarkFailed("an acknowledgement without a sequence")

    return by_hand


def _median(rounds: Sequence[Figures]) -> Figures:
    return Figures(
        rounds[0].variant,
        statistics.median(r.server_us for r in rounds),
        statistics.median(r.client_us for r in rounds),
        statistics.median(r.wall_us for r in rounds),
    )


def report(messages: int, rounds: int, results: Sequence[Figures]) -> str:
    base = results[0]
    rows = [
        [
            r.variant.label,
            f"{r.server_us:.0f}",
            f"{r.server_us / base.server_us:.2f}" if base.server_us else "-",
            f"{r.client_us:.0f}",
            f"{r.client_us / base.client_us:.2f}" if base.client_us else "-",
            f"{r.wall_us:.0f}",
            f"{r.wall_us / base.wall_us:.2f}",
        ]
        for r in results
    ]
    headers = [
        "variant",
        "nats-server µs/msg",
        "x base",
        "client µs/msg",
        "x base",
        "wall µs/msg",
        "x base",
    ]
    lines = [
        *machine_facts(),
        f"params:  {messages} messages, one sender, each publish awaited; {ROOMS} rooms; "
        f"medians of {rounds} interleaved rounds",
        "",
        table(headers, rows),
    ]
    return "\n".join(lines)


async def bench(messages: int, rounds: int) -> list[Figures]:
    runs: dict[str, list[Figures]] = {v.label: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            runs[variant.label].append(await measure(variant, messages))
    return [_median(figures) for figures in runs.values()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=1500, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run with small numbers")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    messages = 100 if args.quick else max(args.messages, 10)
    rounds = 1 if args.quick else max(args.rounds, 1)
    try:
        results = run(bench(messages, rounds))
    except BenchmarkFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(report(messages, rounds, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
