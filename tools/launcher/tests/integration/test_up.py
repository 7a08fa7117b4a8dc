"""``chat up`` as a real process: real nats-server, services and WebSocket clients."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from unittest.mock import ANY
from urllib.parse import parse_qs, urlsplit

import pytest

from chat_gateway.auth import JwtConfig, User, issue_token, verify_token
from chat_runtime.settings import Secret
from falcon_pachinko.testing import connect, scaled
from falcon_pachinko.testing.nats import nats_server

from .procs import Launch, alive

pytestmark = pytest.mark.integration

Env = Callable[..., dict[str, str]]
FreePorts = Callable[[int], int]


def send(text: str) -> dict[str, object]:
    return {"type": "clientSendMessage", "payload": {"text": text}}


async def test_two_gateways_chat_then_ctrl_c_stops_everything(
    launch: Launch, env: Env, free_ports: FreePorts
) -> None:
    secret = secrets.token_urlsafe(32)
    async with nats_server() as nats:
        base = free_ports(2)
        chat = await launch(
            "--gateways",
            "2",
            "--port",
            str(base),
            "--metrics-port",
            "0",
            env=env(CHAT_NATS_URL=nats.url, CHAT_JWT_SECRET=secret),
        )
        out = await chat.ready()
        assert f"http://127.0.0.1:{base}/" in out and f"http://127.0.0.1:{base + 1}/" in out
        match = re.search(r"^WebSocket: (ws://\S+)$", out, flags=re.MULTILINE)
        assert match is not None, out
        demo_url = match.group(1)
        (token,) = parse_qs(urlsplit(demo_url).query)["token"]
        assert verify_token(token, JwtConfig(secret=Secret(secret)), time.time()) == User(
            "demo", expires_at=ANY
        )

        bob_url = f"ws://127.0.0.1:{base + 1}/ws/chat/general?token={issue_token(secret, 'Bob')}"
        async with connect(demo_url) as demo:
            await demo.expect("serverSystemMessage")
            await demo.expect("serverPresence")
            async with connect(bob_url) as bob:
                await bob.expect("serverSystemMessage")
                await bob.expect("serverPresence")
                assert (await demo.expect("serverUserJoined"))["payload"] == {"user": "Bob"}
                await bob.send_json(send("hello from gateway 2"))
                message = (await demo.expect("serverNewMessage"))["payload"]
                assert (message["user"], message["text"]) == ("Bob", "hello from gateway 2")
                assert message["seq"] >= 1  # stored: the launcher's NATS has JetStream
                await demo.send_json(send("hello from gateway 1"))
                own = await bob.expect("serverNewMessage")  # the sender gets its own too
                assert own["payload"]["user"] == "Bob"
                message = (await bob.expect("serverNewMessage"))["payload"]
                assert (message["user"], message["text"]) == ("demo", "hello from gateway 1")

        pids = chat.pids()
        assert set(pids) == {"rooms", "announcer", f"gateway-{base}", f"gateway-{base + 1}"}
        chat.proc.send_signal(signal.SIGINT)
        assert await chat.exit_code(timeout_s=30) == 0
        assert chat.survivors() == {}
        stops = [line for line in chat.stderr.lines if line.startswith("chat: stopped ")]
        order = [line.split()[2] for line in stops]
        assert order[2:] == ["announcer", "rooms"], stops  # gateways first, then these
        # Log hygiene: neither the key nor any token reached the terminal's log.
        assert secret not in chat.stderr.text and token not in chat.stderr.text


async def test_a_child_that_dies_is_reported_and_the_launcher_exits_1(
    launch: Launch, env: Env, free_ports: FreePorts
) -> None:
    async with nats_server() as nats:
        base = free_ports(1)
        chat = await launch(
            "--port", str(base), "--metrics-port", "0", env=env(CHAT_NATS_URL=nats.url)
        )
        out = await chat.ready()
        assert "a random one was made for this session" in out and "?token=" in out
        pids = chat.pids()
        os.kill(pids[f"gateway-{base}"], signal.SIGKILL)
        assert await chat.exit_code(timeout_s=30) == 1
        assert f"chat: gateway-{base} exited with code -9 (SIGKILL)" in chat.stderr.lines
        assert chat.survivors() == {}


async def test_the_launcher_runs_its_own_nats_server(
    launch: Launch, env: Env, free_ports: FreePorts, tmp_path: Path
) -> None:
    base = free_ports(2)
    nats_port = base + 1
    chat = await launch(
        "--port",
        str(base),
        "--metrics-port",
        "0",
        "--nats-port",
        str(nats_port),
        env=env(CHAT_AUTH="dev"),
        cwd=tmp_path,
    )
    out = await chat.ready()
    assert f"nats://127.0.0.1:{nats_port} (JetStream data in .data/nats)" in out
    assert f"Development mode (CHAT_AUTH=dev): open http://127.0.0.1:{base}/" in out
    assert (tmp_path / ".data" / "nats" / "jetstream").is_dir()
    async with connect(f"ws://127.0.0.1:{base}/ws/chat/general?user=Alice") as alice:
        await alice.expect("serverSystemMessage")
        await alice.expect("serverPresence")
    assert "nats-server" in chat.pids()
    chat.proc.send_signal(signal.SIGTERM)
    assert await chat.exit_code(timeout_s=30) == 0
    assert chat.stderr.lines[-2] == "chat: stopped nats-server (exit code 0)"
    assert chat.survivors() == {}


async def test_a_gateway_that_cannot_start_stops_the_others_too(
    launch: Launch, env: Env, free_ports: FreePorts, tmp_path: Path
) -> None:
    base = free_ports(2)
    nats_port = base + 1
    chat = await launch(
        "--port",
        str(base),
        "--metrics-port",
        "0",
        "--nats-port",
        str(nats_port),
        env=env(CHAT_AUTH="dev"),
        cwd=tmp_path,
    )
    # The port was free when the launcher checked it; take it before the gateway starts.
    await chat.stderr.wait_for(r"^chat: started announcer ")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base))
        squatter.listen()
        assert await chat.exit_code(timeout_s=60) == 1
    # The gateway's own code for "could not bind" is not the launcher's business: any non-zero.
    reported = rf"^chat: gateway-{base} exited with code [1-9]\d*$"
    assert any(re.match(reported, line) for line in chat.stderr.lines), chat.stderr.text
    assert chat.stdout.text == ""
    assert set(chat.pids()) == {"nats-server", "rooms", "announcer", f"gateway-{base}"}
    assert chat.survivors() == {}


async def test_children_do_not_outlive_a_killed_launcher(
    launch: Launch, env: Env, free_ports: FreePorts
) -> None:
    async with nats_server() as nats:
        base = free_ports(1)
        chat = await launch(
            "--port", str(base), "--metrics-port", "0", env=env(CHAT_NATS_URL=nats.url)
        )
        await chat.ready()
        pids = chat.pids()
        chat.proc.kill()  # no finally, no signal handler: only PR_SET_PDEATHSIG helps
        assert await chat.exit_code() == -signal.SIGKILL
        # Polled (bounded): the children are not ours, no event tells us they exited.
        async with asyncio.timeout(scaled(20)):
            while any(alive(pid) for pid in pids.values()):
                await asyncio.sleep(0.05)
