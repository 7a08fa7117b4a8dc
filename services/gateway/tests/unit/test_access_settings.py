"""Settings for who may connect: origins, key sources and algorithms."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chat_gateway.settings import load_settings

SECRET = "settings-test-secret-0123456789ab"
JWKS = "https://id.example/.well-known/jwks.json"


def pem_file(tmp_path: Path, key: object) -> str:
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


def test_algorithms_default_to_the_kind_of_key(tmp_path: Path) -> None:
    assert load_settings({"CHAT_JWT_SECRET": SECRET}).jwt_algorithm_list == ("HS256",)
    assert load_settings({"CHAT_JWT_JWKS_URL": JWKS}).jwt_algorithm_list == ("RS256", "ES256")
    key = pem_file(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    settings = load_settings({"CHAT_JWT_PUBLIC_KEY_FILE": key, "CHAT_JWT_ALGORITHMS": "ES256"})
    assert settings.jwt_algorithm_list == ("ES256",)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        pytest.param({}, ["CHAT_JWT_SECRET", "CHAT_JWT_JWKS_URL"], id="no-key"),
        pytest.param(
            {"CHAT_JWT_SECRET": SECRET, "CHAT_JWT_JWKS_URL": JWKS},
            ["CHAT_JWT_SECRET", "CHAT_JWT_JWKS_URL"],
            id="two-keys",
        ),
        pytest.param(
            {"CHAT_JWT_SECRET": SECRET, "CHAT_JWT_ALGORITHMS": "RS256"},
            ["CHAT_JWT_ALGORITHMS", "CHAT_JWT_SECRET"],
            id="rs256-with-a-secret",
        ),
        pytest.param(
            {"CHAT_JWT_JWKS_URL": JWKS, "CHAT_JWT_ALGORITHMS": "RS256,HS256"},
            ["CHAT_JWT_ALGORITHMS", "HS256"],
            id="hs256-with-public-keys",
        ),
        pytest.param(
            {"CHAT_JWT_JWKS_URL": JWKS, "CHAT_JWT_ALGORITHMS": "none"},
            ["CHAT_JWT_ALGORITHMS"],
            id="none",
        ),
        pytest.param(
            {"CHAT_JWT_JWKS_URL": "http://id.example/jwks.json"},
            ["CHAT_JWT_JWKS_URL", "https"],
            id="jwks-in-the-clear",
        ),
        pytest.param(
            {"CHAT_JWT_PUBLIC_KEY_FILE": "/nonexistent/key.pem"},
            ["CHAT_JWT_PUBLIC_KEY_FILE"],
            id="missing-key-file",
        ),
        pytest.param(
            {"CHAT_JWT_SECRET": SECRET, "CHAT_ALLOWED_ORIGINS": "*"},
            ["CHAT_ALLOWED_ORIGINS", "CHAT_AUTH=dev"],
            id="any-origin-outside-dev",
        ),
        pytest.param(
            {"CHAT_JWT_SECRET": SECRET, "CHAT_ALLOWED_ORIGINS": "https://a.example/"},
            ["CHAT_ALLOWED_ORIGINS"],
            id="origin-with-a-path",
        ),
    ],
)
def test_impossible_combinations_name_the_variables(env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ValueError) as caught:
        load_settings({"CHAT_AUTH": "jwt", **env})
    for name in names:
        assert name in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_weak_key_file_is_refused(tmp_path: Path) -> None:
    key = pem_file(tmp_path, rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(ValueError, match="CHAT_JWT_PUBLIC_KEY_FILE"):
        load_settings({"CHAT_JWT_PUBLIC_KEY_FILE": key})


def test_loopback_jwks_over_http_and_any_origin_in_dev_are_allowed() -> None:
    load_settings({"CHAT_JWT_JWKS_URL": "http://127.0.0.1:9000/jwks.json"})
    load_settings({"CHAT_JWT_JWKS_URL": "http://[::1]:9000/jwks.json"})
    assert load_settings({"CHAT_AUTH": "dev", "CHAT_ALLOWED_ORIGINS": "*"}).origin_policy.any_origin


def test_allowed_origins_are_normalised() -> None:
    settings = load_settings(
        {"CHAT_AUTH": "dev", "CHAT_ALLOWED_ORIGINS": " HTTPS://Chat.Example.com:443 ,http://x:8000"}
    )
    assert settings.origin_policy.origins == {"https://chat.example.com", "http://x:8000"}
