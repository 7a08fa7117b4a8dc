"""RS256/ES256 verification with keys passed in, algorithm pinning, the rooms claim,
and the JWKS cache (a fake fetch and a fake clock: no sockets)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from unittest.mock import ANY

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chat_gateway.auth import JwtConfig, Rejected, User, verify_token
from chat_gateway.errors import KeysUnavailable
from chat_gateway.keys import JwksKeys, PublicKeys, load_public_key, parse_jwks
from chat_gateway.settings import Secret
from falcon_pachinko.permissions import RoomPatterns

NOW = 1_700_000_000.0
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ASYMMETRIC = JwtConfig(algorithms=("RS256", "ES256"))
KEYS = PublicKeys(by_kid={"r": RSA_KEY.public_key(), "e": EC_KEY.public_key()})


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "Alice", "iat": int(NOW), "exp": int(NOW) + 600, **extra}


def sign(key: Any, algorithm: str, kid: str | None = None, **extra: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**extra), key, algorithm=algorithm, headers=headers)


def pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def hs256(secret: bytes, kid: str | None = None) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


ALICE = User("Alice", expires_at=ANY)


def test_rs256_and_es256_tokens_verify_with_their_keys() -> None:
    assert verify_token(sign(RSA_KEY, "RS256", "r"), ASYMMETRIC, NOW, KEYS) == User(
        "Alice", expires_at=ANY
    )
    assert verify_token(sign(EC_KEY, "ES256", "e"), ASYMMETRIC, NOW, KEYS) == User(
        "Alice", expires_at=ANY
    )


def test_a_pem_key_is_used_whatever_the_kid() -> None:
    keys = PublicKeys(default=load_public_key(pem(RSA_KEY)))
    assert verify_token(sign(RSA_KEY, "RS256"), ASYMMETRIC, NOW, keys) == User(
        "Alice", expires_at=ANY
    )
    assert verify_token(sign(RSA_KEY, "RS256", "any"), ASYMMETRIC, NOW, keys) == User(
        "Alice", expires_at=ANY
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(hs256(pem(RSA_KEY)), "bad_algorithm", id="hs256-with-the-public-key"),
        pytest.param(hs256(pem(RSA_KEY), kid="r"), "bad_algorithm", id="hs256-with-kid"),
        pytest.param(sign(RSA_KEY, "RS256", "e"), "bad_algorithm", id="rs256-naming-the-ec-key"),
        pytest.param(sign(EC_KEY, "ES256", "r"), "bad_algorithm", id="es256-naming-the-rsa-key"),
        pytest.param(sign(RSA_KEY, "PS256", "r"), "bad_algorithm", id="ps256"),
        pytest.param(sign(RSA_KEY, "RS512", "r"), "bad_algorithm", id="rs512"),
        pytest.param(jwt.encode(claims(), None, algorithm="none"), "bad_algorithm", id="none"),
        pytest.param(sign(RSA_KEY, "RS256", "other"), "unknown_key", id="unknown-kid"),
        pytest.param(sign(RSA_KEY, "RS256"), "unknown_key", id="no-kid-two-keys"),
        pytest.param(
            sign(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", "r"),
            "bad_signature",
            id="another-rsa-key",
        ),
    ],
)
def test_forgeries_and_confusions_are_refused(token: str, reason: str) -> None:
    assert verify_token(token, ASYMMETRIC, NOW, KEYS) == Rejected(reason)  # type: ignore[arg-type]


def test_an_rs256_token_is_refused_by_an_hs256_gateway() -> None:
    config = JwtConfig(secret=Secret("s" * 32))
    assert verify_token(sign(RSA_KEY, "RS256", "r"), config, NOW, KEYS) == Rejected("bad_algorithm")


def test_a_rooms_claim_becomes_the_users_room_policy() -> None:
    token = sign(RSA_KEY, "RS256", "r", rooms=["general", "team-*"])
    user = verify_token(token, ASYMMETRIC, NOW, KEYS)
    assert user == User("Alice", rooms=RoomPatterns.parse(["general", "team-*"]), expires_at=ANY)
    assert isinstance(user, User) and user.rooms is not None
    assert user.rooms.allows("team-red") and not user.rooms.allows("random")


@pytest.mark.parametrize(
    "rooms", [[], ["te*am"], [""], "general", [1], {"a": 1}, None, ["*x"]], ids=repr
)
def test_a_malformed_rooms_claim_is_invalid_claims(rooms: object) -> None:
    token = sign(RSA_KEY, "RS256", "r", rooms=rooms)
    assert verify_token(token, ASYMMETRIC, NOW, KEYS) == Rejected("invalid_claims")


def test_weak_or_private_or_symmetric_keys_are_not_loaded() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError):
        load_public_key(pem(weak))
    with pytest.raises(ValueError):
        load_public_key(pem(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(ValueError):
        load_public_key(b"not a key")
    document = {
        "keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(weak.public_key())) | {"kid": "weak"},
            json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key())) | {"kid": "r"},
            json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
            | {"kid": "enc", "use": "enc"},
            json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key())),
            "junk",
        ]
    }
    assert set(parse_jwks(document).by_kid) == {"r"}
    with pytest.raises(ValueError):
        parse_jwks({"nokeys": []})


def jwks_document(*kids: str) -> dict[str, Any]:
    entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    return {"keys": [{**entry, "kid": kid} for kid in kids]}


class FakeIssuer:
    def __init__(self, *kids: str) -> None:
        self.document: Any = jwks_document(*kids)
        self.calls = 0
        self.up = True

    def fetch(self) -> Any:
        self.calls += 1
        if not self.up:
            raise jwt.PyJWKClientConnectionError("down")
        return self.document


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_jwks(issuer: FakeIssuer, clock: Clock) -> JwksKeys:
    return JwksKeys(
        "https://id.example/jwks.json",
        max_age_s=300,
        min_refresh_s=5,
        clock=clock,
        fetch=issuer.fetch,
    )


async def test_jwks_known_kids_are_served_from_the_cache_until_it_ages() -> None:
    issuer, clock = FakeIssuer("k1"), Clock()
    keys = make_jwks(issuer, clock)
    for _ in range(5):
        assert (await keys.keys_for("k1")).find("k1") is not None
    assert issuer.calls == 1
    clock.now = 301
    await keys.keys_for("k1")
    assert issuer.calls == 2


async def test_jwks_an_unknown_kid_refetches_at_most_once_per_interval() -> None:
    issuer, clock = FakeIssuer("k1"), Clock()
    keys = make_jwks(issuer, clock)
    await keys.keys_for("k1")
    issuer.document = jwks_document("k1", "k2")
    clock.now = 5
    assert (await keys.keys_for("k2")).find("k2") is not None  # rotation picked up
    assert issuer.calls == 2
    for kid in ("x", "y", "z"):
        assert (await keys.keys_for(kid)).find(kid) is None
    assert issuer.calls == 2  # within min_refresh_s of the last fetch: none
    clock.now = 10
    for kid in ("x", "y", "z"):
        assert (await keys.keys_for(kid)).find(kid) is None
    assert issuer.calls == 3  # one refetch for x; y and z came within the interval


async def test_jwks_outages_keep_known_keys_and_refuse_unknown_ones_as_unavailable() -> None:
    issuer, clock = FakeIssuer("k1"), Clock()
    keys = make_jwks(issuer, clock)
    await keys.keys_for("k1")
    issuer.up = False
    clock.now = 400  # stale: a refetch is tried and fails; the old key stays usable
    assert (await keys.keys_for("k1")).find("k1") is not None
    clock.now = 410
    with pytest.raises(KeysUnavailable):
        await keys.keys_for("k9")
    with pytest.raises(KeysUnavailable):
        await keys.keys_for("k9")  # throttled: no new fetch, still unavailable
    assert issuer.calls == 3


async def test_jwks_never_fetched_is_unavailable() -> None:
    issuer, clock = FakeIssuer("k1"), Clock()
    issuer.up = False
    with pytest.raises(KeysUnavailable):
        await make_jwks(issuer, clock).keys_for("k1")
