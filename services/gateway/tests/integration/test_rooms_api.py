"""``GET /api/rooms``: the room picker's list, over real uvicorn with real WebSocket members."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats as nats_py
import pytest

from chat_gateway.app import create_app
from chat_gateway.auth import issue_token
from chat_gateway.server import uvicorn_options
from chat_gateway.settings import load_settings
from chat_protocol import subjects
from falcon_pachinko import Directory, NatsBackend
from falcon_pachinko.subjects import Subjects
from falcon_pachinko.testing import LiveServer, connect, scaled, serve
from falcon_pachinko.testing.nats import nats_server

from .conftest import StartGateway

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-0123456789abcdef"
JWT_ENV = {"CHAT_AUTH": "jwt", "CHAT_JWT_SECRET": SECRET}


def _get(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=scaled(5)) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


async def rooms(
    server: LiveServer, headers: dict[str, str] | None = None, **params: str
) -> tuple[int, Any]:
    """``(status, body)`` of ``GET /api/rooms`` with ``params`` as its query."""
    query = urllib.parse.urlencode(params)
    return await asyncio.to_thread(_get, f"{server.url}/api/rooms?{query}", headers or {})


@contextlib.asynccontextmanager
async def members(server: LiveServer, *joins: tuple[str, str], **auth: str) -> AsyncIterator[None]:
    """Each ``(room, user)`` connected (and given the roster) for the duration of the block."""
    async with contextlib.AsyncExitStack() as stack:
        for room, user in joins:
            params = {"user": user} if not auth else {"token": issue_token(SECRET, user)}
            ws = await stack.enter_async_context(
                connect(server.ws_url(f"/ws/chat/{room}", **params))
            )
            # The roster comes once the directory has this member (read-your-writes).
            await ws.expect("serverPresence")
        yield


PEOPLE = [("general", "Alice"), ("general", "Bob"), ("general", "Bob"), ("lobby", "Cleo")]


async def test_lists_rooms_with_people_sorted(start_gateway: StartGateway) -> None:
    server = await start_gateway()
    assert await rooms(server, user="Zed") == (200, {"rooms": [], "truncated": False})
    async with members(server, *PEOPLE, ("team-a", "Dan")):
        status, body = await rooms(server, user="Zed")
        assert status == 200
        # People, not connections: Bob's two tabs count once.
        assert body == {
            "rooms": [
                {"name": "general", "users": 2},
                {"name": "lobby", "users": 1},
                {"name": "team-a", "users": 1},
            ],
            "truncated": False,
        }
        assert await rooms(server, user="Zed", prefix="lo") == (
            200,
            {"rooms": [{"name": "lobby", "users": 1}], "truncated": False},
        )
        assert (await rooms(server, user="Zed", prefix="team-"))[1]["rooms"] == [
            {"name": "team-a", "users": 1}
        ]
        assert (await rooms(server, user="Zed", prefix="nothing"))[1]["rooms"] == []
    # Everyone left: no room has people in it.
    assert (await rooms(server, user="Zed"))[1]["rooms"] == []


@pytest.mark.parametrize(
    "prefix", ["General", "a.b", "*", "team-*", ">", "-x", "_x", " a", "a" * 65]
)
async def test_a_prefix_that_is_not_the_start_of_a_room_name_is_400(
    start_gateway: StartGateway, prefix: str
) -> None:
    server = await start_gateway()
    assert (await rooms(server, user="Zed", prefix=prefix))[0] == 400


async def test_no_identity_is_401(start_gateway: StartGateway) -> None:
    server = await start_gateway()
    assert (await rooms(server))[0] == 401
    assert (await rooms(server, user="Bob!"))[0] == 401  # not a user name
    jwt_server = await start_gateway(**JWT_ENV)
    assert (await rooms(jwt_server))[0] == 401
    assert (await rooms(jwt_server, user="Alice"))[0] == 401  # dev mode's name is no proof
    assert (await rooms(jwt_server, token="not.a.jwt"))[0] == 401
    wrong = issue_token("another-secret-0123456789abcdef-xyz", "Alice")
    assert (await rooms(jwt_server, {"Authorization": f"Bearer {wrong}"}))[0] == 401
    expired = issue_token(SECRET, "Alice", now=0)
    assert (await rooms(jwt_server, {"Authorization": f"Bearer {expired}"}))[0] == 401


async def test_a_foreign_origin_is_403(start_gateway: StartGateway) -> None:
    server = await start_gateway()
    foreign = {"Origin": "https://evil.example"}
    assert (await rooms(server, foreign, user="Zed"))[0] == 403
    assert (await rooms(server, {"Origin": server.url}, user="Zed"))[0] == 200
    allowed = await start_gateway(CHAT_ALLOWED_ORIGINS="https://chat.example")
    assert (await rooms(allowed, {"Origin": "https://chat.example"}, user="Zed"))[0] == 200
    assert (await rooms(allowed, {"Origin": allowed.url}, user="Zed"))[0] == 403


async def test_a_token_lists_only_the_rooms_it_permits(start_gateway: StartGateway) -> None:
    server = await start_gateway(**JWT_ENV)
    joins = [("general", "Alice"), ("lobby", "Cleo"), ("team-a", "Dan"), ("team-b", "Eve")]
    async with members(server, *joins, token="yes"):
        limited = issue_token(SECRET, "Zed", rooms=["general", "team-*"])
        bearer = {"Authorization": f"Bearer {limited}"}
        status, body = await rooms(server, bearer)
        assert status == 200
        assert [room["name"] for room in body["rooms"]] == ["general", "team-a", "team-b"]
        # The same token as ?token= (what a WebSocket sends), with a prefix.
        status, body = await rooms(server, token=limited, prefix="team-b")
        assert (status, [room["name"] for room in body["rooms"]]) == (200, ["team-b"])
        # A token without the claim sees every room.
        status, body = await rooms(server, token=issue_token(SECRET, "Zed"))
        assert [room["name"] for room in body["rooms"]] == ["general", "lobby", "team-a", "team-b"]


@contextlib.asynccontextmanager
async def nats_gateway(nats_url: str) -> AsyncIterator[LiveServer]:
    """A gateway of a cluster (its rooms on NATS), live only."""
    settings = load_settings(
        {"CHAT_AUTH": "dev", "CHAT_BACKEND": "nats", "CHAT_NATS_URL": nats_url, "CHAT_HISTORY": "0"}
    )
    backend = NatsBackend(
        servers=nats_url, subject_prefix=subjects.PREFIX, heartbeat_interval_s=0.2
    )
    options = {**uvicorn_options(settings), "port": 0}
    async with serve(create_app(settings, backend), **options) as server:
        yield server


async def test_in_a_cluster_the_directory_lists_every_gateway_s_rooms(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        nats = await stack.enter_async_context(nats_server(tmp_path, jetstream=False))
        nc = await nats_py.connect(nats.url)
        stack.push_async_callback(nc.close)
        directory = Directory(nc, Subjects(subjects.PREFIX), startup_quiet_s=0)
        await directory.start()
        stack.push_async_callback(directory.stop)
        gateway_a = await stack.enter_async_context(nats_gateway(nats.url))
        gateway_b = await stack.enter_async_context(nats_gateway(nats.url))
        await stack.enter_async_context(members(gateway_a, ("general", "Alice"), ("lobby", "Cleo")))
        await stack.enter_async_context(members(gateway_b, ("general", "Bob"), ("ops", "Dan")))
        expected = {
            "rooms": [
                {"name": "general", "users": 2},
                {"name": "lobby", "users": 1},
                {"name": "ops", "users": 1},
            ],
            "truncated": False,
        }
        # Either gateway answers for the whole cluster.
        for server in (gateway_a, gateway_b):
            assert await rooms(server, user="Zed") == (200, expected)
        assert (await rooms(gateway_a, user="Zed", prefix="o"))[1]["rooms"] == [
            {"name": "ops", "users": 1}
        ]
