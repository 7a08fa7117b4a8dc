"""Fixtures: ``chat up`` as a real process (see procs.py), cleaned up after each test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from .procs import Launch, Launcher, clean_env, consecutive_free_ports


@pytest_asyncio.fixture
async def launch(tmp_path: Path) -> AsyncIterator[Launch]:
    """``chat = await launch("--gateways", "2", env={...}, cwd=...)``.

    Whatever the test does, the launcher and every child it reported are gone after it.
    """
    started: list[Launcher] = []

    async def start(*args: str, env: dict[str, str], cwd: Path = tmp_path) -> Launcher:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chat_launcher",
            "up",
            *args,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        started.append(Launcher(proc))
        return started[-1]

    try:
        yield start
    finally:
        for chat in started:
            await _clean_up(chat)


async def _clean_up(chat: Launcher) -> None:
    if chat.proc.returncode is None:
        chat.proc.send_signal(signal.SIGTERM)
        try:
            await chat.exit_code(timeout_s=30)
        except TimeoutError:
            chat.proc.kill()
            await chat.proc.wait()
    for pid in chat.survivors().values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def free_ports() -> Callable[[int], int]:
    """``base = free_ports(2)``: the first of 2 consecutive free ports."""
    return consecutive_free_ports


@pytest.fixture
def env() -> Callable[..., dict[str, str]]:
    """``env(CHAT_X="...")``: a clean environment (no inherited CHAT_*) for the launcher."""
    return clean_env
