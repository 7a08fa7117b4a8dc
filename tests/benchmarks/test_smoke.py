"""The benchmarks keep working: each runs with ``--quick`` and prints its comparison.

These tests never look at the figures: speed is what the benchmarks report, not
something a test asserts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from falcon_pachinko.testing import scaled

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.system]


def run_quick(module: str, *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    """``python -m <module> --quick`` from the repository root, bounded in time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    result = subprocess.run(
        [sys.executable, "-m", module, "--quick", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(timeout_s),
        check=False,
    )
    assert result.returncode == 0, f"{module} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_encode_benchmark_prints_its_comparison() -> None:
    out = run_quick("benchmarks.encode").stdout
    assert "machine:" in out and "params:" in out
    header = next(line for line in out.splitlines() if "ns/delivery" in line)
    assert "speed vs baseline" in header
    for label in ("json.dumps per recipient (baseline)", "encode once + manager.deliver"):
        assert label in out


def test_fanout_benchmark_prints_its_comparison() -> None:
    out = run_quick("benchmarks.fanout").stdout
    assert "machine:" in out and "params:" in out
    header = next(line for line in out.splitlines() if line.startswith("configuration"))
    for column in ("wall s", "deliveries/s", "x baseline", "p99 ms", "client CPU s"):
        assert column in header
    rows = [line for line in out.splitlines() if line.startswith(("memory,", "nats,", "nats +"))]
    assert [row.split("  ")[0] for row in rows] == [
        "memory, live only (baseline)",
        "memory, history",
        "memory, history, plain ASGI",
        "nats, live only",
        "nats + JetStream history",
        "nats + history, plain ASGI",
        "nats + history, 2 gateways",
    ]
    assert out.count("deliveries verified") == 7
    assert "history on vs off (memory):" in out and "history on vs off (nats):" in out
    assert "library writing the sockets vs plain ASGI (nats):" in out
    assert "cross-gateway hop (nats2):" in out


def test_history_benchmark_prints_its_comparison() -> None:
    out = run_quick("benchmarks.history").stdout
    assert "machine:" in out and "params:" in out
    header = next(line for line in out.splitlines() if line.startswith("read"))
    for column in ("median ms", "best ms", "x baseline"):
        assert column in header
    for label in (
        "NatsHistory.after: one batch direct get",
        "NatsHistory.latest: counted seek + batch",
        "NatsHistory.has: one direct get by seq",
    ):
        assert label in out


def test_peers_benchmark_prints_its_table_and_ratios(tmp_path: Path) -> None:
    results = tmp_path / "peers.json"
    out = run_quick("benchmarks.peers", "--json", str(results), timeout_s=90).stdout
    assert "machine:" in out and "params:" in out and "pinning:" in out
    header = next(line for line in out.splitlines() if line.startswith("server "))
    for column in ("knee deliveries/s", "CPU µs/delivery @20k", "idle MB/1k conns", "connect"):
        assert column in header
    rows = [
        line.split()[0] for line in out.splitlines() if line.startswith(("memory ", "websockets "))
    ]
    assert rows == ["memory", "websockets"]
    assert "ratios (same run):" in out
    assert "product knee / socketio knee" in out
    document = json.loads(results.read_text())
    assert [r["key"] for r in document["results"]] == ["memory", "websockets"]
    assert all("knee" in r and "steps" in r for r in document["results"])


def test_jetstream_benchmark_prints_every_variant_beside_the_baseline() -> None:
    out = run_quick("benchmarks.jetstream").stdout
    assert "machine:" in out and "params:" in out
    for label in ("NatsHistory.append, as deployed (baseline)", "no republish"):
        assert label in out
    assert out.count("x base") == 3


def test_the_gateway_app_runs_under_each_server_the_peer_table_compares() -> None:
    servers = "memory-asgi,granian,picows-gateway"
    out = run_quick("benchmarks.peers", "--only", servers, "--no-json", timeout_s=120)
    rows = [line for line in out.stdout.splitlines() if line.startswith("memory, ")]
    assert [row.split("  ")[0] for row in rows] == [
        "memory, plain ASGI",
        "memory, on Granian",
        "memory, on picows",
    ]
    # Each served its clients: a knee, not "failed", in its row.
    assert all(row.split()[3].startswith(">=") for row in rows), rows
