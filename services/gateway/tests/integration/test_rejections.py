"""Every refused handshake: the status it means, counted once, logged once, no token in logs."""

from __future__ import annotations

import time
from typing import Any

import pytest
import structlog

from chat_gateway.auth import issue_token

from .conftest import Gateway, StartObserved

pytestmark = pytest.mark.integration

SECRET = "rejections-test-secret-0123456789abcdef"
JWT = {
    "CHAT_AUTH": "jwt",
    "CHAT_JWT_SECRET": SECRET,
    "CHAT_ALLOWED_ORIGINS": "https://chat.example",
}


def token(name: str, **claims: Any) -> str:
    return issue_token(SECRET, name, **claims)


CASES = [
    # (id, settings, path, query, origin, status, reason)
    ("bad-signature", {}, "general", {"token": token("Ann") + "x"}, None, 403, "unauthenticated"),
    ("no-token", {}, "general", {}, None, 403, "unauthenticated"),
    (
        "expired",
        {},
        "general",
        {"token": token("Ann", now=time.time() - 7200)},
        None,
        403,
        "unauthenticated",
    ),
    ("invalid-room", {}, "Bad.Room", {"token": token("Ann")}, None, 403, "invalid_room_name"),
    (
        "room-not-permitted",
        {},
        "general",
        {"token": token("Ann", rooms=["team-*"])},
        None,
        403,
        "room_not_permitted",
    ),
    (
        "foreign-origin",
        {},
        "general",
        {"token": token("Ann")},
        "https://evil.example",
        403,
        "origin_not_allowed",
    ),
    (
        "gateway-full",
        {"CHAT_MAX_CONNECTIONS": "1"},
        "general",
        {"token": token("Ann")},
        None,
        503,
        "gateway_full",
    ),
    (
        "too-many-for-the-user",
        {"CHAT_MAX_CONNECTIONS_PER_USER": "1"},
        "general",
        {"token": token("Ann")},
        None,
        429,
        "too_many_connections",
    ),
]


@pytest.mark.parametrize(
    ("env", "room", "query", "origin", "status", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
async def test_each_refusal_is_counted_and_logged_once_without_the_token(
    gateway: StartObserved,
    env: dict[str, str],
    room: str,
    query: dict[str, str],
    origin: str | None,
    status: int,
    reason: str,
) -> None:
    gw: Gateway = await gateway(**JWT, **env)
    holder = None
    if reason in ("gateway_full", "too_many_connections"):
        # Someone already holds the only place.
        holder = await _hold(gw, token("Ann"))
    with structlog.testing.capture_logs() as logs:
        assert await gw.status(f"/ws/chat/{room}", origin=origin, **query) == status
    assert gw.rejected(reason) == 1
    rejections = [e for e in logs if e.get("event") == _LOGGED_AS.get(reason, "chat.rejected")]
    assert len(rejections) == 1, rejections
    secrets = [value for value in query.values() if value]
    for event in logs:
        for secret in secrets:
            assert secret not in repr(event), event
    if holder is not None:
        await holder.close()


#: The log event each refusal is told by (the chat's own refusals: chat.rejected).
_LOGGED_AS = {
    "unauthenticated": "auth.rejected",
    "origin_not_allowed": "origin.rejected",
    "gateway_full": "pachinko.refused_full",
}


async def _hold(gw: Gateway, credential: str) -> Any:
    import websockets

    client = await websockets.connect(gw.server.ws_url("/ws/chat/general", token=credential))
    await client.recv()  # the welcome: the connection is in
    return client
