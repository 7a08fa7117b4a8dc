"""JWT authentication at the WebSocket handshake, over real uvicorn and real clients."""

from __future__ import annotations

import time

import jwt
import pytest
import structlog

from chat_gateway.auth import issue_token
from falcon_pachinko.testing import connect, handshake_status

from .conftest import StartGateway

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-0123456789abcdef"
JWT_ENV = {"CHAT_AUTH": "jwt", "CHAT_JWT_SECRET": SECRET}
ROOM = "/ws/chat/general"


def welcome(name: str) -> dict[str, object]:
    return {
        "type": "serverSystemMessage",
        "payload": {"text": f"Welcome {name} to room 'general'!"},
    }


async def test_a_valid_token_connects_as_its_user(start_gateway: StartGateway) -> None:
    server = await start_gateway(**JWT_ENV)
    async with connect(server.ws_url(ROOM, token=issue_token(SECRET, "Alice"))) as alice:
        assert await alice.receive() == welcome("Alice")


async def test_the_token_decides_the_name_not_the_user_parameter(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway(**JWT_ENV)
    url = server.ws_url(ROOM, token=issue_token(SECRET, "Bob"), user="Mallory")
    async with connect(url) as bob:
        assert await bob.receive() == welcome("Bob")


async def test_audience_issuer_and_claim_settings_apply(start_gateway: StartGateway) -> None:
    server = await start_gateway(
        **JWT_ENV,
        CHAT_JWT_AUDIENCE="chat",
        CHAT_JWT_ISSUER="https://id.example",
        CHAT_JWT_USER_CLAIM="name",
    )
    options = {"audience": "chat", "issuer": "https://id.example", "claim": "name"}
    async with connect(server.ws_url(ROOM, token=issue_token(SECRET, "Cleo", **options))) as c:
        assert await c.receive() == welcome("Cleo")
    wrong_audience = issue_token(SECRET, "Cleo", **{**options, "audience": "wiki"})
    assert await handshake_status(server.ws_url(ROOM, token=wrong_audience)) == 403


BAD_SIGNATURE = issue_token("another-secret-0123456789abcdef-xyz", "Alice")
EXPIRED = issue_token(SECRET, "Alice", ttl_s=60, now=time.time() - 3600)
UNSIGNED = jwt.encode({"sub": "Alice", "exp": 4102444800}, None, algorithm="none")


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"token": BAD_SIGNATURE}, id="bad-signature"),
        pytest.param({"token": EXPIRED}, id="expired"),
        pytest.param({"token": UNSIGNED}, id="alg-none"),
        pytest.param({"token": "not-a-token"}, id="garbage"),
        pytest.param({"token": ""}, id="empty-token"),
        pytest.param({}, id="no-token"),
        pytest.param({"user": "Alice"}, id="user-without-token"),
    ],
)
async def test_the_handshake_is_rejected_with_403(
    start_gateway: StartGateway, query: dict[str, str]
) -> None:
    server = await start_gateway(**JWT_ENV)
    assert await handshake_status(server.ws_url(ROOM, query)) == 403


async def test_a_rejection_is_logged_with_its_reason_and_without_the_token(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway(**JWT_ENV)
    token = EXPIRED
    with structlog.testing.capture_logs() as events:
        assert await handshake_status(server.ws_url(ROOM, token=token)) == 403
    rejections = [e for e in events if e["event"] == "auth.rejected"]
    assert rejections == [{"event": "auth.rejected", "reason": "expired", "log_level": "info"}]
    assert token not in repr(events)


async def test_dev_mode_still_accepts_the_user_parameter(start_gateway: StartGateway) -> None:
    server = await start_gateway(CHAT_AUTH="dev")
    async with connect(server.ws_url(ROOM, user="Alice")) as alice:
        assert await alice.receive() == welcome("Alice")
