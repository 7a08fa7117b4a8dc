"""``chat kick`` against a real nats-server: the gateways' managers close the user."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from chat_launcher.cli import main
from falcon_pachinko import Connection, ConnectionLimits, WebSocketConnectionManager
from falcon_pachinko.backends.nats import NatsBackend
from falcon_pachinko.testing import scaled

pytestmark = pytest.mark.integration


class Socket:
    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.code: int | None = None

    async def accept(self, subprotocol: str | None = None) -> None:
        pass

    async def send_text(self, payload: str) -> None:
        pass

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.code = code
        self.closed.set()


async def member(manager: WebSocketConnectionManager, user: str, room: str) -> Socket:
    sock = Socket()
    conn = Connection(sock, ConnectionLimits(), connection_id=manager.new_connection_id())  # type: ignore[arg-type]
    await conn.accept()
    manager.register(conn, user)
    await manager.join_room(conn, room)
    return sock


def chat(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), env, out, err)
    return code, out.getvalue(), err.getvalue()


async def test_chat_kick_closes_the_user_on_every_gateway(pachinko_nats: Any) -> None:
    server = await pachinko_nats(jetstream=False)
    managers = [WebSocketConnectionManager(NatsBackend(server.url)) for _ in range(2)]
    for manager in managers:
        await manager.start()
    try:
        alice = [await member(m, "Alice", "general") for m in managers]
        alice_elsewhere = await member(managers[1], "Alice", "random")
        bob = await member(managers[0], "Bob", "general")
        env = {"CHAT_NATS_URL": server.url}

        code, out, _ = await asyncio.to_thread(chat, "kick", "Alice", "--room", "general", env=env)
        assert code == 0
        assert "'Alice'" in out and "'general'" in out and "chat._dir.kick" in out
        async with asyncio.timeout(scaled(1.0)):
            for sock in alice:
                await sock.closed.wait()
        assert [sock.code for sock in alice] == [4501, 4501]
        assert not alice_elsewhere.closed.is_set() and not bob.closed.is_set()

        code, out, _ = await asyncio.to_thread(chat, "kick", "Alice", env=env)
        assert code == 0 and "every room" in out
        async with asyncio.timeout(scaled(1.0)):
            await alice_elsewhere.closed.wait()
        assert not bob.closed.is_set()
    finally:
        for manager in managers:
            await manager.stop()


def test_chat_kick_without_nats_exits_1() -> None:
    code, _, err = chat("kick", "Alice", env={"CHAT_NATS_URL": "nats://127.0.0.1:1"})
    assert code == 1 and "cannot reach NATS" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["kick", "no/slashes"],
        ["kick", "Alice", "--room", "Not A Room"],
        ["kick", "A", "--reason", "x" * 124],
    ],
)
def test_chat_kick_checks_its_arguments(argv: list[str]) -> None:
    code, _, err = chat(*argv, env={})
    assert code == 2 and err.startswith("chat kick:")
