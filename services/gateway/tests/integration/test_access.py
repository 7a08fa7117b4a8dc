"""Who may connect, over real uvicorn: Origin, RS256/ES256 and a rotating JWKS, rooms."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chat_gateway.auth import issue_token
from falcon_pachinko.testing import connect

from .conftest import StartObserved

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-0123456789abcdef"
ROOM = "/ws/chat/general"


# -- Origin ------------------------------------------------------------------------


async def test_only_the_own_origin_is_allowed_by_default(gateway: StartObserved) -> None:
    gw = await gateway(CHAT_AUTH="dev")
    own = gw.server.url  # http://127.0.0.1:<port>, the page's origin
    assert await gw.status(origin=own, user="Alice") == 101
    assert await gw.status(user="Alice") == 101  # no Origin: not a browser page
    with structlog.testing.capture_logs() as logs:
        assert await gw.status(origin="https://evil.example", user="Alice") == 403
        assert await gw.status(origin=own.replace("http:", "https:"), user="Alice") == 403
    assert gw.rejected("origin_not_allowed") == 2
    rejected = [e for e in logs if e["event"] == "origin.rejected"]
    assert [e["reason"] for e in rejected] == ["origin_not_allowed"] * 2
    # The origin guard runs before authentication: no user was even looked at.
    assert not [e for e in logs if e["event"] == "auth.rejected"]


@pytest.mark.parametrize(
    "origin",
    [
        "https://chat.example.com.evil.com",
        "https://evilchat.example.com",
        "null",
        "http://chat.example.com",
        "https://chat.example.com:8443",
    ],
)
async def test_lookalike_origins_are_refused_before_the_token_is_read(
    gateway: StartObserved, origin: str
) -> None:
    gw = await gateway(
        CHAT_AUTH="jwt", CHAT_JWT_SECRET=SECRET, CHAT_ALLOWED_ORIGINS="https://chat.example.com"
    )
    token = issue_token(SECRET, "Alice")
    assert await gw.status(origin="HTTPS://Chat.Example.com:443", token=token) == 101
    with structlog.testing.capture_logs() as logs:
        assert await gw.status(origin=origin, token=token) == 403
    assert gw.rejected("origin_not_allowed") == 1
    assert token not in repr(logs)
    assert "token=" not in repr(logs)


# -- room permissions ----------------------------------------------------------------


async def test_a_rooms_claim_limits_the_rooms(gateway: StartObserved) -> None:
    gw = await gateway(CHAT_AUTH="jwt", CHAT_JWT_SECRET=SECRET)
    token = issue_token(SECRET, "Alice", rooms=["general", "team-*"])
    assert await gw.status(token=token) == 101
    assert await gw.status("/ws/chat/team-red", token=token) == 101
    with structlog.testing.capture_logs() as logs:
        assert await gw.status("/ws/chat/random", token=token) == 403
        assert await gw.status("/ws/chat/team", token=token) == 403
    assert gw.rejected("room_not_permitted") == 2
    assert [e["reason"] for e in logs if e["event"] == "chat.rejected"] == [
        "room_not_permitted"
    ] * 2
    assert token not in repr(logs)
    # Without the claim, every room.
    assert await gw.status("/ws/chat/random", token=issue_token(SECRET, "Bob")) == 101


async def test_a_malformed_rooms_claim_is_invalid_claims(gateway: StartObserved) -> None:
    gw = await gateway(CHAT_AUTH="jwt", CHAT_JWT_SECRET=SECRET)
    with structlog.testing.capture_logs() as logs:
        for rooms in (["te*am"], [], "general", [1]):
            token = issue_token(SECRET, "Alice", rooms=rooms)  # type: ignore[arg-type]
            assert await gw.status(token=token) == 403
    assert [e["reason"] for e in logs if e["event"] == "auth.rejected"] == ["invalid_claims"] * 4
    assert gw.rejected("unauthenticated") == 4


# -- RS256 / ES256 and a JWKS ---------------------------------------------------------


def signed(key: Any, algorithm: str, name: str, kid: str | None = None) -> str:
    now = int(time.time())
    headers = {"kid": kid} if kid is not None else None
    claims = {"sub": name, "iat": now, "exp": now + 600}
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else None
    if algorithm is None:
        entry = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    else:
        entry = json.loads(algorithm.to_jwk(key.public_key()))
    return {**entry, "kid": kid, "use": "sig"}


class JwksServer:
    """A JWK Set on 127.0.0.1, served from a thread; ``keys`` can be swapped."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        self.up = True
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                outer.requests += 1
                if not outer.up:
                    self.send_error(503)
                    return
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/jwks.json"

    @contextlib.contextmanager
    def running(self) -> Iterator[JwksServer]:
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()
            thread.join()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with JwksServer().running() as server:
        yield server


async def test_a_rotated_key_is_fetched_once_and_cached(
    gateway: StartObserved, jwks: JwksServer
) -> None:
    old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new = ec.generate_private_key(ec.SECP256R1())
    jwks.keys = [jwk(old, "k1")]
    gw = await gateway(CHAT_AUTH="jwt", CHAT_JWT_JWKS_URL=jwks.url, CHAT_JWT_JWKS_MIN_REFRESH_S="0")
    token = signed(old, "RS256", "Alice", kid="k1")
    assert await gw.status(token=token) == 101
    assert await gw.status(token=token) == 101
    assert jwks.requests == 1  # the known kid is not fetched again

    jwks.keys = [jwk(old, "k1"), jwk(new, "k2")]  # the issuer rotates
    async with connect(gw.server.ws_url(ROOM, token=signed(new, "ES256", "Bob", kid="k2"))) as b:
        assert (await b.receive())["type"] == "serverSystemMessage"
    assert jwks.requests == 2  # the new kid caused one refetch
    assert await gw.status(token=signed(new, "ES256", "Bob", kid="k2")) == 101
    assert jwks.requests == 2


async def test_unknown_kids_and_a_jwks_outage(gateway: StartObserved, jwks: JwksServer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.keys = [jwk(key, "k1")]
    gw = await gateway(CHAT_AUTH="jwt", CHAT_JWT_JWKS_URL=jwks.url)
    with structlog.testing.capture_logs() as logs:
        assert await gw.status(token=signed(key, "RS256", "Alice", kid="nope")) == 403
        # Within CHAT_JWT_JWKS_MIN_REFRESH_S (5 s): made-up kids cause no fetch.
        for n in range(3):
            assert await gw.status(token=signed(key, "RS256", "Alice", kid=f"x{n}")) == 403
    assert jwks.requests == 1
    assert [e["reason"] for e in logs if e["event"] == "auth.rejected"] == ["unknown_key"] * 4


async def test_keys_that_cannot_be_fetched_are_a_503(gateway: StartObserved) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = JwksServer()
    jwks.up = False
    with jwks.running():
        gw = await gateway(CHAT_AUTH="jwt", CHAT_JWT_JWKS_URL=jwks.url)
        assert await gw.status(token=signed(key, "RS256", "Alice", kid="k1")) == 503
    assert gw.rejected("keys_unavailable") == 1


async def test_a_pem_key_file_verifies_rs256_and_refuses_hs256_confusion(
    gateway: StartObserved, tmp_path: Any
) -> None:
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "issuer.pem"
    path.write_bytes(pem)
    gw = await gateway(CHAT_AUTH="jwt", CHAT_JWT_PUBLIC_KEY_FILE=str(path))
    assert await gw.status(token=signed(key, "RS256", "Alice")) == 101
    # HS256 "signed" with the public key as the HMAC secret: the confusion attack.
    forged = hs256_with_key_bytes({"sub": "Mallory", "exp": int(time.time()) + 600}, pem)
    with structlog.testing.capture_logs() as logs:
        assert await gw.status(token=forged) == 403
    assert [e["reason"] for e in logs if e["event"] == "auth.rejected"] == ["bad_algorithm"]


def hs256_with_key_bytes(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token made by hand (PyJWT refuses a PEM key as an HMAC secret)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"
