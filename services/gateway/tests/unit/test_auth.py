"""The token verifier (pure: the time is injected) and its Falcon middleware."""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from typing import Any

import falcon.testing
import jwt
import pytest
import structlog
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chat_gateway.auth import (
    MAX_TOKEN_CHARS,
    DevAuthMiddleware,
    JwtAuthMiddleware,
    JwtConfig,
    Rejected,
    User,
    issue_token,
    verify_token,
)
from chat_gateway.settings import Secret
from chat_protocol import InvalidUserName

SECRET = "unit-test-secret-" + "0123456789abcdef" * 3  # 65 bytes: no HS512 key warning
OTHER_SECRET = "another-secret-0123456789abcdef-x"
NOW = 1_700_000_000.0
CONFIG = JwtConfig(secret=Secret(SECRET))

#: Examples per property test: 20 keeps each under the 50 ms unit-test budget;
#: set PROPERTY_EXAMPLES (say, 10000) for a deeper search.
PROPERTY_EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "20"))


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for Alice at NOW; ``None`` removes a claim."""
    base: dict[str, Any] = {"sub": "Alice", "iat": int(NOW), "exp": int(NOW) + 3600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], secret: str | None = SECRET) -> str:
    """A token with any header, HMAC-SHA256-signed with ``secret`` (empty if ``None``)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    signature = jwt.get_algorithm_by_name("HS256").sign(signing_input.encode(), secret.encode())
    return f"{signing_input}.{b64(signature)}"


def reason(token: str | None, config: JwtConfig = CONFIG, now: float = NOW) -> str:
    result = verify_token(token, config, now)
    assert isinstance(result, Rejected), f"accepted as {result!r}"
    return result.reason


# -- valid tokens -------------------------------------------------------------------


def test_a_valid_token_names_its_user() -> None:
    assert verify_token(sign(claims()), CONFIG, NOW) == User("Alice", expires_at=int(NOW) + 3600)


def test_the_name_claim_is_configurable() -> None:
    config = JwtConfig(secret=Secret(SECRET), user_claim="name")
    token = sign(claims(sub="user-8812", name="Bob"))
    assert verify_token(token, config, NOW) == User("Bob", expires_at=int(NOW) + 3600)
    assert reason(sign(claims()), config) == "invalid_claims"  # has sub, lacks name


# -- time ---------------------------------------------------------------------------

EXP = int(NOW) + 60


@pytest.mark.parametrize(
    ("now", "leeway_s", "expected"),
    [
        pytest.param(EXP - 1, 5.0, "ok", id="before-exp"),
        pytest.param(EXP, 5.0, "ok", id="at-exp-within-leeway"),
        pytest.param(EXP + 4.999, 5.0, "ok", id="just-inside-leeway"),
        pytest.param(EXP + 5, 5.0, "expired", id="at-leeway-edge-fails"),
        pytest.param(EXP + 6, 5.0, "expired", id="beyond-leeway"),
        pytest.param(EXP - 0.5, 0.0, "ok", id="no-leeway-before-exp"),
        pytest.param(EXP, 0.0, "expired", id="no-leeway-at-exp"),
    ],
)
def test_expiry_boundary(now: float, leeway_s: float, expected: str) -> None:
    config = JwtConfig(secret=Secret(SECRET), leeway_s=leeway_s)
    result = verify_token(sign(claims(exp=EXP)), config, now)
    assert result == (User("Alice", expires_at=EXP) if expected == "ok" else Rejected("expired"))


@pytest.mark.parametrize(
    ("claim", "offset", "expected"),
    [
        pytest.param("nbf", 5, "ok", id="nbf-within-leeway"),
        pytest.param("nbf", 6, "not_yet_valid", id="nbf-beyond-leeway"),
        pytest.param("iat", 5, "ok", id="iat-within-leeway"),
        pytest.param("iat", 6, "not_yet_valid", id="iat-beyond-leeway"),
    ],
)
def test_tokens_from_the_future(claim: str, offset: int, expected: str) -> None:
    result = verify_token(sign(claims(**{claim: int(NOW) + offset})), CONFIG, NOW)
    assert result == (
        User("Alice", expires_at=int(NOW) + 3600) if expected == "ok" else Rejected("not_yet_valid")
    )


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(claims(exp=None), id="no-exp"),
        pytest.param(claims(exp="tomorrow"), id="exp-string"),
        pytest.param(claims(exp=True), id="exp-bool"),
        pytest.param(claims(exp=[EXP]), id="exp-list"),
        pytest.param(claims(nbf="now"), id="nbf-string"),
        pytest.param(claims(iat={"t": 1}), id="iat-object"),
    ],
)
def test_missing_or_mistyped_time_claims_are_rejected(payload: dict[str, Any]) -> None:
    assert reason(sign(payload)) == "invalid_claims"


def test_a_non_finite_exp_is_rejected() -> None:
    # Python's json reads Infinity, which would make a token that never expires.
    token = forge({"alg": "HS256", "typ": "JWT"}, claims(exp=float("inf")))
    assert reason(token) == "invalid_claims"


# -- signature and algorithm --------------------------------------------------------


def test_another_key_is_a_bad_signature() -> None:
    assert reason(sign(claims(), secret=OTHER_SECRET)) == "bad_signature"


def test_an_altered_payload_is_a_bad_signature() -> None:
    header, _payload, signature = sign(claims()).split(".")
    mallory = b64(json.dumps(claims(sub="Mallory")).encode())
    assert reason(f"{header}.{mallory}.{signature}") == "bad_signature"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none_is_rejected(alg: str) -> None:
    unsigned = forge({"alg": alg, "typ": "JWT"}, claims(), secret=None)
    assert reason(unsigned) == "bad_algorithm"
    # Even with a valid HS256 signature attached, the header decides nothing.
    assert reason(forge({"alg": alg}, claims())) == "bad_algorithm"


def test_pyjwt_alg_none_token_is_rejected() -> None:
    assert reason(jwt.encode(claims(), None, algorithm="none")) == "bad_algorithm"


@pytest.mark.parametrize(
    "alg", ["HS384", "HS512", "RS256", "ES256", "PS256", "EdDSA", "hs256", ["HS256"]]
)
def test_other_algorithms_are_rejected(alg: Any) -> None:
    # Signed with HS256 and the right key: only the header's claim differs, as in
    # an algorithm-confusion attack.
    assert reason(forge({"alg": alg, "typ": "JWT"}, claims())) == "bad_algorithm"


def test_a_genuine_hs512_token_is_rejected() -> None:
    assert reason(sign(claims(), algorithm="HS512")) == "bad_algorithm"


def test_a_header_without_alg_is_rejected() -> None:
    assert reason(forge({"typ": "JWT"}, claims())) == "bad_algorithm"


# -- the name claim -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("a\nb", id="newline"),
        pytest.param("x" * 33, id="33-chars"),
        pytest.param(" Alice", id="leading-space"),
        pytest.param("Alice\r\n", id="trailing-crlf"),
        pytest.param(123, id="number"),
        pytest.param(["Alice"], id="list"),
    ],
)
def test_a_missing_or_invalid_name_is_rejected(name: Any) -> None:
    assert reason(sign(claims(sub=name))) == "invalid_claims"


def test_a_32_character_name_is_accepted() -> None:
    assert verify_token(sign(claims(sub="x" * 32)), CONFIG, NOW) == User(
        "x" * 32, expires_at=int(NOW) + 3600
    )


# -- audience and issuer ------------------------------------------------------------

AUD_ISS = JwtConfig(secret=Secret(SECRET), audience="chat", issuer="https://id.example")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"aud": "chat", "iss": "https://id.example"}, "ok", id="both-match"),
        pytest.param({"aud": ["wiki", "chat"], "iss": "https://id.example"}, "ok", id="aud-list"),
        pytest.param({"iss": "https://id.example"}, "invalid_claims", id="no-aud"),
        pytest.param({"aud": "wiki", "iss": "https://id.example"}, "wrong_audience", id="bad-aud"),
        pytest.param({"aud": "chat"}, "invalid_claims", id="no-iss"),
        pytest.param({"aud": "chat", "iss": "https://evil.example"}, "wrong_issuer", id="bad-iss"),
    ],
)
def test_audience_and_issuer_are_enforced_when_configured(
    overrides: dict[str, Any], expected: str
) -> None:
    result = verify_token(sign(claims(**overrides)), AUD_ISS, NOW)
    assert result == (
        User("Alice", expires_at=int(NOW) + 3600) if expected == "ok" else Rejected(expected)
    )


def test_without_configuration_iss_is_free_and_aud_is_refused() -> None:
    assert verify_token(sign(claims(iss="anyone")), CONFIG, NOW) == User(
        "Alice", expires_at=int(NOW) + 3600
    )
    # RFC 7519 §4.1.3: a recipient that is not named in aud must reject the token.
    assert reason(sign(claims(aud="chat"))) == "wrong_audience"


# -- garbage ------------------------------------------------------------------------


def test_no_token() -> None:
    assert reason(None) == "missing_token"
    assert reason("") == "missing_token"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="word"),
        pytest.param("a.b", id="two-segments"),
        pytest.param("a.b.c", id="not-base64-json"),
        pytest.param("..", id="empty-segments"),
        pytest.param("é.é.é", id="non-ascii"),
        pytest.param("\x00\x01.\x02", id="control-chars"),
        pytest.param(b64(b"[1]") + "." + b64(b"{}") + ".", id="header-not-object"),
        pytest.param(b64(b"{") + "." + b64(b"{}") + ".", id="header-bad-json"),
        pytest.param(b64(b"[" * 2000) + ".e30.", id="deep-json"),
        pytest.param("Bearer " + "x" * 20, id="bearer-prefix"),
        pytest.param("x" * (MAX_TOKEN_CHARS + 1), id="too-long"),
    ],
)
def test_garbage_is_malformed(token: str) -> None:
    assert reason(token) == "malformed"


def test_a_non_object_payload_is_malformed() -> None:
    token = jwt.api_jws.encode(b"[1, 2]", SECRET, algorithm="HS256")
    assert reason(token) == "malformed"


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(st.text(max_size=300))
@example(sign(claims())[:-1])
@example(sign(claims()) + ".")
def test_any_text_is_rejected_with_a_reason_and_never_raises(token: str) -> None:
    assert isinstance(verify_token(token, CONFIG, NOW), Rejected)


_B64 = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=80
)


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(st.lists(_B64, min_size=1, max_size=5).map(".".join))
def test_any_token_shaped_text_is_rejected_and_never_raises(token: str) -> None:
    assert isinstance(verify_token(token, CONFIG, NOW), Rejected)


# -- issue_token --------------------------------------------------------------------


def test_issue_token_round_trips() -> None:
    token = issue_token(SECRET, "Alice", now=NOW)
    assert verify_token(token, CONFIG, NOW) == User("Alice", expires_at=int(NOW) + 3600)
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert decoded == {"sub": "Alice", "iat": int(NOW), "exp": int(NOW) + 3600}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_issue_token_with_every_option_round_trips() -> None:
    config = JwtConfig(
        secret=Secret(SECRET), user_claim="name", audience="chat", issuer="https://id.example"
    )
    token = issue_token(
        SECRET,
        "Zoë O'Neil",
        ttl_s=60,
        now=NOW,
        audience="chat",
        issuer="https://id.example",
        claim="name",
    )
    assert verify_token(token, config, NOW + 60 + 4) == User("Zoë O'Neil", expires_at=int(NOW) + 60)
    assert verify_token(token, config, NOW + 60 + 5) == Rejected("expired")


def test_issue_token_uses_the_wall_clock_by_default() -> None:
    now = time.time()
    user = verify_token(issue_token(SECRET, "Alice"), CONFIG, now)
    assert isinstance(user, User) and user.name == "Alice"
    assert user.expires_at is not None and abs(user.expires_at - (now + 3600)) <= 2


def test_issue_token_refuses_bad_input() -> None:
    with pytest.raises(InvalidUserName):
        issue_token(SECRET, "a\nb")
    with pytest.raises(ValueError, match="ttl_s"):
        issue_token(SECRET, "Alice", ttl_s=0)


# -- middleware and log hygiene -----------------------------------------------------


def ws_request(query_string: str) -> Any:
    return falcon.testing.create_asgi_req(path="/ws/chat/general", query_string=query_string)


async def test_the_middleware_sets_the_user_from_a_valid_token() -> None:
    middleware = JwtAuthMiddleware(CONFIG, clock=lambda: NOW)
    req = ws_request(f"token={sign(claims())}&user=Mallory")
    await middleware.process_request_ws(req, None)
    assert req.context.get("user") == User("Alice", expires_at=int(NOW) + 3600)


async def test_the_middleware_leaves_a_rejected_request_without_user() -> None:
    middleware = JwtAuthMiddleware(CONFIG, clock=lambda: NOW + 7200)
    req = ws_request(f"token={sign(claims())}")
    with structlog.testing.capture_logs() as events:
        await middleware.process_request_ws(req, None)
    assert req.context.get("user") is None
    assert events == [{"event": "auth.rejected", "reason": "expired", "log_level": "info"}]


async def test_plain_http_requests_without_token_log_nothing() -> None:
    middleware = JwtAuthMiddleware(CONFIG, clock=lambda: NOW)
    with structlog.testing.capture_logs() as events:
        await middleware.process_request(falcon.testing.create_asgi_req(path="/healthz"), None)
        await middleware.process_request_ws(ws_request(""), None)
    assert events == [{"event": "auth.rejected", "reason": "missing_token", "log_level": "info"}]


REJECTED_TOKENS = {
    "expired": issue_token(SECRET, "Alice", ttl_s=60, now=NOW - 3600),
    "bad_signature": sign(claims(), secret=OTHER_SECRET),
    "bad_algorithm": forge({"alg": "none"}, claims(), secret=None),
    "invalid_claims": sign(claims(sub="Evil\nInjected")),
    "malformed": "not-a-jwt-but-maybe-a-password-S3cr3t",
}


async def test_rejected_tokens_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    middleware = JwtAuthMiddleware(CONFIG, clock=lambda: NOW)
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        for token in REJECTED_TOKENS.values():
            await middleware.process_request_ws(ws_request(f"token={token}&room=x"), None)
    assert [e["reason"] for e in events] == list(REJECTED_TOKENS)
    logged = repr(events) + caplog.text
    for token in REJECTED_TOKENS.values():
        for fragment in (token, *token.split(".")):
            if len(fragment) >= 8:
                assert fragment not in logged
    assert "token=" not in logged and "Injected" not in logged
    assert all(set(e) == {"event", "reason", "log_level"} for e in events)


async def test_dev_mode_trusts_the_user_parameter() -> None:
    req = ws_request("user=Alice")
    await DevAuthMiddleware().process_request_ws(req, None)
    assert req.context.get("user") == User("Alice")  # no expiry in dev mode
    bad = ws_request("user=a%0Ab")
    with structlog.testing.capture_logs() as events:
        await DevAuthMiddleware().process_request_ws(bad, None)
    assert bad.context.get("user") is None
    assert events == [
        {"event": "auth.rejected", "reason": "invalid_user_name", "log_level": "info"}
    ]


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_a_date_too_large_for_any_clock_is_invalid_claims_not_an_exception(claim: str) -> None:
    assert verify_token(sign(claims(**{claim: 10**400})), CONFIG, NOW) == Rejected("invalid_claims")
