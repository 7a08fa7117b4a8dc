"""The announcer as a process: ready, announces, stops on SIGTERM (0) or when NATS is gone (1)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from falcon_pachinko import Member, WebSocketConnectionManager
from falcon_pachinko.backends.nats import NatsBackend
from falcon_pachinko.directory import Directory
from falcon_pachinko.subjects import Subjects
from falcon_pachinko.testing import scaled
from falcon_pachinko.testing.nats import NatsServer, nats_server

pytestmark = pytest.mark.integration


class Process:
    """``python -m chat_announcer`` with its JSON log lines parsed as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []

    async def wait_for(self, event: str) -> dict[str, Any]:
        assert self.proc.stderr is not None
        async with asyncio.timeout(scaled(10)):
            while line := await self.proc.stderr.readline():
                self.events.append(json.loads(line))
                if self.events[-1].get("event") == event:
                    return self.events[-1]
        raise AssertionError(f"exited before {event!r}: {self.events[-5:]}")

    async def exit_code(self) -> int:
        async with asyncio.timeout(scaled(10)):
            assert self.proc.stderr is not None
            await self.proc.stderr.read()
            return await self.proc.wait()


@contextlib.asynccontextmanager
async def announcer(server: NatsServer, **env: str) -> AsyncIterator[Process]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    environ |= {
        "CHAT_NATS_URL": server.url,
        "CHAT_METRICS_PORT": "0",
        "CHAT_LOG_FORMAT": "json",
        "CHAT_ANNOUNCE_INTERVAL_S": "0.5",
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chat_announcer", env=environ, stderr=asyncio.subprocess.PIPE
    )
    try:
        yield Process(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_ready_announces_and_exits_0_on_sigterm() -> None:
    async with nats_server() as server:
        nc = await nats.connect(server.url)
        directory = Directory(nc, Subjects("chat"), ttl_s=5)
        await directory.start()
        members = WebSocketConnectionManager(NatsBackend(servers=server.url))
        await members.start()
        ann = Member(connection_id="c1", presence="ann")
        await members.backend.presence.member_joined("general", ann)
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def record(msg: Msg) -> None:
            received.put_nowait(msg.data)

        await nc.subscribe("chat.general", cb=record)
        await nc.flush()
        try:
            async with announcer(server) as process:
                ready = await process.wait_for("service.ready")
                assert ready["service"] == "announcer"
                async with asyncio.timeout(scaled(5)):
                    data = await received.get()
                assert json.loads(data) == {
                    "type": "serverSystemAnnouncement",
                    "payload": {"text": "System maintenance is scheduled for 2 AM UTC."},
                }
                process.proc.send_signal(signal.SIGTERM)
                assert await process.exit_code() == 0
        finally:
            await members.stop()
            await directory.stop()
            await nc.close()


async def test_exits_1_when_nats_is_gone_for_good() -> None:
    async with nats_server() as server:
        async with announcer(
            server, CHAT_NATS_MAX_RECONNECT_ATTEMPTS="1", CHAT_NATS_RECONNECT_WAIT_S="0.1"
        ) as process:
            await process.wait_for("service.ready")
            await server.kill()
            assert await process.exit_code() == 1
