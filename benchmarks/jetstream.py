"""What one stored chat message costs on JetStream, by stream setting and publish call.

N chat messages are published one after the other, each awaited, as one sender's
are, into a stream configured as ``NatsHistory`` configures it (file storage, a
deduplication window, ``max_msgs_per_subject``, republish onto ``chat.<room>``,
every message carrying an id and the library's headers), on a real
``nats-server``; a subscriber on ``chat.*`` receives every republished copy. Each
variant drops one ingredient, so its cost shows beside the baseline measured in
the same run: nats-server CPU and this process's CPU per message (``/proc`` and
``time.process_time``), and the wall time per message.

    python -m benchmarks.jetstream [--messages N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import nats
from nats.js.api import RePublish, StorageType, StreamConfig

from falcon_pachinko.testing.nats import nats_server

from . import BenchmarkFailed, machine_facts, run, table

BODY: Final = b'{"type":"serverNewMessage","payload":{"user":"alice","text":"' + b"x" * 64 + b'"}}'
ROOMS: Final = 10
WAIT_S: Final = 30.0


@dataclass(frozen=True)
class Variant:
    label: str
    storage: StorageType = StorageType.FILE
    msg_id: bool = True
    republish: bool = True
    headers: bool = True
    publish_async: bool = False


VARIANTS: Final = (
    Variant("as deployed: js.publish, file, id, republish (baseline)"),
    Variant("js.publish_async, its future awaited", publish_async=True),
    Variant("memory storage", storage=StorageType.MEMORY),
    Variant("no Nats-Msg-Id (no deduplication)", msg_id=False),
    Variant("no origin/exclusion headers", headers=False),
    Variant("no republish (and no subscriber)", republish=False),
)


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


async def _publish_all(nc: nats.NATS, pid: int, variant: Variant, messages: int) -> Figures:
    js = nc.jetstream()
    republish = RePublish(src="chat._h.*", dest="chat.{{wildcard(1)}}")
    await js.add_stream(
        StreamConfig(
            name="CHAT_HISTORY",
            subjects=["chat._h.*"],
            storage=variant.storage,
            max_msgs_per_subject=1000,
            duplicate_window=120,
            allow_direct=True,
            republish=republish if variant.republish else None,
        )
    )
    received = 0
    all_in = asyncio.Event()

    async def count(_msg: object) -> None:
        nonlocal received
        received += 1
        if received == messages:
            all_in.set()

    if variant.republish:
        await nc.subscribe("chat.*", cb=count)
    cpu0, server0, wall0 = time.process_time(), _cpu_s(pid), time.perf_counter()
    for i in range(messages):
        headers = {"Pachinko-Time": str(time.time_ns() // 1_000_000)}
        if variant.headers:
            headers |= {"Pachinko-Origin": "node-0123456789", "Pachinko-Exclude": "conn-0123"}
        if variant.msg_id:
            headers["Nats-Msg-Id"] = uuid.uuid4().hex
        subject = f"chat._h.room{i % ROOMS}"
        if variant.publish_async:
            ack = await js.publish_async(subject, BODY, headers=headers)
            await ack
        else:
            await js.publish(subject, BODY, headers=headers)
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


def report(messages: int, results: Sequence[Figures]) -> str:
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
        f"params:  {messages} messages, one sender, each publish awaited; {ROOMS} rooms",
        "",
        table(headers, rows),
    ]
    return "\n".join(lines)


async def bench(messages: int) -> list[Figures]:
    return [await measure(variant, messages) for variant in VARIANTS]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="a smoke run with small numbers")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    messages = 100 if args.quick else max(args.messages, 10)
    try:
        results = run(bench(messages))
    except BenchmarkFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(report(messages, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
