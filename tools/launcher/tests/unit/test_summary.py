"""What ``chat up`` prints once everything is ready."""

from __future__ import annotations

import time
from unittest.mock import ANY
from urllib.parse import parse_qs, urlsplit

from chat_gateway.auth import JwtConfig, User, verify_token
from chat_launcher.plan import Plan, UpOptions, make_plan
from chat_launcher.summary import DEMO_TTL_S, display_host, ready_message
from chat_launcher.tokens import mint

SECRET = "z" * 43
PORTS = {"gateway-8000": 8000, "gateway-8001": 8001, "rooms": 9101, "announcer": 9102}


def two_gateways(**environ: str) -> Plan:
    return make_plan(UpOptions(gateways=2), environ, lambda: SECRET)


def test_every_url_is_listed() -> None:
    text = ready_message(two_gateways(CHAT_AUTH="dev"), PORTS, nats_dir=".data/nats", token=None)
    for url in (
        "http://127.0.0.1:8000/",
        "http://127.0.0.1:8001/",
        "http://127.0.0.1:9101/metrics",
        "http://127.0.0.1:9102/metrics",
        "nats://127.0.0.1:4222 (JetStream data in .data/nats)",
    ):
        assert url in text


def test_dev_mode_says_any_name_works() -> None:
    text = ready_message(two_gateways(CHAT_AUTH="dev"), PORTS, nats_dir=".data/nats", token=None)
    assert "Development mode (CHAT_AUTH=dev): open http://127.0.0.1:8000/" in text
    assert "any name works" in text
    assert "WebSocket clients: ws://127.0.0.1:8000/ws/chat/<room>?user=<name>" in text
    assert "token" not in text.lower()


def test_jwt_mode_gives_a_working_ws_url_and_never_the_secret() -> None:
    plan = two_gateways()
    token = mint(plan.gateway, "demo", DEMO_TTL_S)
    text = ready_message(plan, PORTS, nats_dir=".data/nats", token=token)
    assert SECRET not in text
    assert "a random one was made for this session" in text
    (ws,) = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("WebSocket:")]
    url = urlsplit(ws)
    assert (url.scheme, url.netloc, url.path) == ("ws", "127.0.0.1:8000", "/ws/chat/general")
    (sent,) = parse_qs(url.query)["token"]
    config = JwtConfig(secret=plan.gateway.jwt_secret)  # type: ignore[arg-type]
    assert verify_token(sent, config, time.time() + DEMO_TTL_S - 60) == User("demo", expires_at=ANY)


def test_an_external_nats_url_is_shown_without_credentials() -> None:
    plan = two_gateways(CHAT_AUTH="dev", CHAT_NATS_URL="nats://u:p@nats.example:4222")
    text = ready_message(plan, PORTS, nats_dir=".data/nats", token=None)
    assert "nats://nats.example:4222 (CHAT_NATS_URL)" in text
    assert "u:p" not in text


def test_wildcard_hosts_are_shown_as_loopback() -> None:
    assert display_host("0.0.0.0") == "127.0.0.1"
    assert display_host("::") == "127.0.0.1"
    assert display_host("::1") == "[::1]"
    assert display_host("example.test") == "example.test"
