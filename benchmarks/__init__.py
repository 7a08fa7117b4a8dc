"""Benchmarks: speed is measured here, never by timed tests.

Every benchmark prints its figures next to a baseline measured in the same run, so
that a number is always read as a comparison made on the same machine at the same
moment. See ``benchmarks/README.md``.

* ``python -m benchmarks.encode``: the fan-out hot path in process (no sockets).
* ``python -m benchmarks.fanout``: end-to-end fan-out with real processes and real
  WebSocket clients, in-process backend against NATS with one and two gateways.
* ``python -m benchmarks.history``: reading durable rooms from JetStream, each
  mechanism against a baseline.
* ``python -m benchmarks.peers``: the product beside hand-written servers on other
  stacks (websockets, picows, Falcon, socket.io), same protocol, open-loop rate steps.

This module holds what they share: the event loop, machine facts, table layout.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

__all__ = ["BenchmarkFailed", "event_loop_name", "machine_facts", "run", "table"]

T = TypeVar("T")


class BenchmarkFailed(Exception):
    """The benchmark could not produce valid figures (lost messages, a dead process...)."""


def _uvloop_version() -> str | None:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return None
    try:
        return importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        return "(unknown version)"


def event_loop_name() -> str:
    """The event loop :func:`run` uses: uvloop when installed, else asyncio's."""
    version = _uvloop_version()
    return f"uvloop {version}" if version is not None else "asyncio (uvloop not installed)"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on one event loop, uvloop when it is installed."""
    if _uvloop_version() is not None:
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def machine_facts() -> list[str]:
    """What a reader needs to compare figures across machines."""
    cpus = os.cpu_count()
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    cpu_text = f"{cpus} CPUs" + (f" ({usable} usable)" if usable not in (None, cpus) else "")
    return [
        f"machine: {cpu_text}, {platform.system()} {platform.machine()}, "
        f"{platform.processor() or 'unknown processor'}",
        f"python:  {platform.python_implementation()} {platform.python_version()} "
        f"({sys.executable})",
        f"loop:    {event_loop_name()} (benchmark process)",
    ]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
