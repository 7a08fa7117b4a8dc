"""WorkerController and @worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog

from falcon_pachinko import WorkerController, worker
from falcon_pachinko.workers import WorkerController as SeedImportPath


def test_controller_is_importable_where_the_seed_imports_it() -> None:
    assert SeedImportPath is WorkerController


async def test_start_passes_dependencies_and_stop_cancels() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def job(conn_mgr: str, n: int) -> None:
        assert (conn_mgr, n) == ("manager", 3)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    controller = WorkerController()
    await controller.start(job, conn_mgr="manager", n=3)
    async with asyncio.timeout(5):
        await started.wait()
    assert controller.running == 1
    await controller.stop()
    assert cancelled.is_set()
    assert controller.running == 0
    await controller.stop()  # idempotent


async def test_a_failing_worker_is_logged_and_others_keep_running() -> None:
    alive = asyncio.Event()

    async def broken() -> None:
        raise ValueError("boom")

    async def healthy() -> None:
        alive.set()
        await asyncio.Event().wait()

    controller = WorkerController()
    with structlog.testing.capture_logs() as logs:
        await controller.start(broken, healthy)
        async with asyncio.timeout(5):
            await alive.wait()
            while controller.running != 1:
                await asyncio.sleep(0)
    failures = [e for e in logs if e["event"] == "pachinko.worker_failed"]
    assert len(failures) == 1 and failures[0]["worker"].endswith("broken")
    assert failures[0]["log_level"] == "error"
    await controller.stop()


async def test_restarting_worker_runs_again_after_failure() -> None:
    runs: list[int] = []
    done = asyncio.Event()

    @worker(name="flaky", restart=True, restart_delay_s=0.01)
    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("transient")
        done.set()
        await asyncio.Event().wait()

    controller = WorkerController()
    await controller.start(flaky)
    async with asyncio.timeout(5):
        await done.wait()
    assert len(runs) == 3
    await controller.stop()


async def test_stop_is_bounded_when_a_worker_ignores_cancellation() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def stubborn() -> None:
        entered.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # ignores cancellation

    controller = WorkerController(stop_timeout_s=0.05)
    await controller.start(stubborn)
    await entered.wait()
    with structlog.testing.capture_logs() as logs:
        async with asyncio.timeout(2):
            await controller.stop()
    assert any(e["event"] == "pachinko.worker_ignored_cancel" for e in logs)
    release.set()


@pytest.mark.parametrize("bad", [lambda: None, print, "text"], ids=["lambda", "builtin", "str"])
async def test_only_coroutine_functions_are_workers(bad: Any) -> None:
    with pytest.raises(TypeError, match="async def"):
        await WorkerController().start(bad)
    with pytest.raises(TypeError, match="async def"):
        worker(bad)


def test_bare_worker_decorator_returns_the_function() -> None:
    async def job() -> None: ...

    assert worker(job) is job
