"""``chat token NAME``: a token the gateways accept, or exit 2 with one clear line."""

from __future__ import annotations

import io
import time
from unittest.mock import ANY

import pytest

from chat_gateway.auth import JwtConfig, Rejected, User, verify_token
from chat_launcher.cli import main
from chat_runtime.settings import Secret

SECRET = "k" * 32


def chat_token(*argv: str, **environ: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["token", *argv], environ, out, err)
    return code, out.getvalue(), err.getvalue()


def test_the_token_is_accepted_by_the_gateway() -> None:
    code, out, err = chat_token("Alice", CHAT_JWT_SECRET=SECRET)
    assert (code, err) == (0, "")
    token = out.strip()
    assert out == token + "\n"
    assert verify_token(token, JwtConfig(secret=Secret(SECRET)), time.time()) == User(
        "Alice", expires_at=ANY
    )


def test_audience_issuer_and_claim_are_honoured() -> None:
    environ = {
        "CHAT_JWT_SECRET": SECRET,
        "CHAT_JWT_AUDIENCE": "chat",
        "CHAT_JWT_ISSUER": "me",
        "CHAT_JWT_USER_CLAIM": "name",
    }
    code, out, _ = chat_token("Bob", **environ)
    assert code == 0
    config = JwtConfig(secret=Secret(SECRET), audience="chat", issuer="me", user_claim="name")
    assert verify_token(out.strip(), config, time.time()) == User("Bob", expires_at=ANY)
    no_audience = JwtConfig(secret=Secret(SECRET), issuer="me", user_claim="name")
    assert verify_token(out.strip(), no_audience, time.time()) == Rejected("wrong_audience")


def test_ttl_sets_the_expiry() -> None:
    code, out, _ = chat_token("Alice", "--ttl", "60", CHAT_JWT_SECRET=SECRET)
    assert code == 0
    config = JwtConfig(secret=Secret(SECRET), leeway_s=0)
    assert verify_token(out.strip(), config, time.time() + 120) == Rejected("expired")


@pytest.mark.parametrize("name", ["", " Alice", "a" * 33, "bad\nname", "x>y"], ids=repr)
def test_an_invalid_name_exits_2(name: str) -> None:
    code, out, err = chat_token(name, CHAT_JWT_SECRET=SECRET)
    assert (code, out) == (2, "")
    assert err.startswith("chat token: invalid name")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({}, "CHAT_JWT_SECRET is not set"),
        ({"CHAT_JWT_SECRET": ""}, "CHAT_JWT_SECRET is not set"),
        ({"CHAT_JWT_SECRET": "k" * 31}, "at least 32 bytes"),
    ],
    ids=["missing", "empty", "31-bytes"],
)
def test_a_missing_or_short_secret_exits_2(environ: dict[str, str], says: str) -> None:
    code, out, err = chat_token("Alice", **environ)
    assert (code, out) == (2, "")
    assert err.startswith("chat token: ") and says in err
    assert "k" * 31 not in err


def test_dev_mode_does_not_excuse_a_missing_secret() -> None:
    code, _, err = chat_token("Alice", CHAT_AUTH="dev")
    assert code == 2 and "CHAT_JWT_SECRET" in err
