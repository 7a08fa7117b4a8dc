"""Gateway settings: defaults, the auth rules, and the redacted secret."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from chat_gateway.settings import MIN_JWT_SECRET_BYTES, Secret, load_settings

SECRET = "settings-test-secret-0123456789ab"  # 33 bytes
JWT_ENV = {"CHAT_JWT_SECRET": SECRET}


def test_defaults() -> None:
    settings = load_settings(JWT_ENV)
    assert settings.auth == "jwt"
    assert settings.jwt_secret == Secret(SECRET)
    assert settings.jwt_user_claim == "sub"
    assert settings.jwt_audience is None
    assert settings.jwt_issuer is None
    assert settings.jwt_leeway_s == 5.0
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000


def test_dev_mode_needs_no_secret() -> None:
    settings = load_settings({"CHAT_AUTH": "dev"})
    assert settings.auth == "dev"
    assert settings.jwt_secret is None


def test_every_jwt_setting_is_read() -> None:
    settings = load_settings(
        {
            **JWT_ENV,
            "CHAT_AUTH": "jwt",
            "CHAT_JWT_USER_CLAIM": "preferred_username",
            "CHAT_JWT_AUDIENCE": "chat",
            "CHAT_JWT_ISSUER": "https://id.example",
            "CHAT_JWT_LEEWAY_S": "0",
        }
    )
    assert settings.jwt_user_claim == "preferred_username"
    assert settings.jwt_audience == "chat"
    assert settings.jwt_issuer == "https://id.example"
    assert settings.jwt_leeway_s == 0.0


def test_jwt_mode_without_a_secret_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="CHAT_AUTH=jwt requires CHAT_JWT_SECRET") as info:
        load_settings({})
    assert "CHAT_AUTH=dev" in str(info.value)  # says how to get going locally


@pytest.mark.parametrize(
    ("secret", "ok"),
    [
        pytest.param("", False, id="empty"),
        pytest.param("x" * (MIN_JWT_SECRET_BYTES - 1), False, id="31-bytes"),
        pytest.param("x" * MIN_JWT_SECRET_BYTES, True, id="32-bytes"),
        # Bytes, not characters: 16 two-byte characters are enough.
        pytest.param("é" * (MIN_JWT_SECRET_BYTES // 2), True, id="32-bytes-in-16-chars"),
    ],
)
def test_short_secrets_are_refused(secret: str, ok: bool) -> None:
    env = {"CHAT_JWT_SECRET": secret}
    if ok:
        assert load_settings(env).jwt_secret == Secret(secret)
        return
    with pytest.raises(ValueError, match="at least 32 bytes") as info:
        load_settings(env)
    assert not secret or secret not in str(info.value)


def test_the_secret_is_never_shown() -> None:
    settings = load_settings(JWT_ENV)
    for text in (repr(settings), str(settings), f"{settings}", repr(settings.jwt_secret)):
        assert SECRET not in text
        assert "**********" in text
    assert str(settings.jwt_secret) == "Secret('**********')"
    assert msgspec.structs.asdict(settings)["jwt_secret"].reveal() == SECRET


def test_secret_is_a_frozen_value() -> None:
    secret = Secret(SECRET)
    assert secret.reveal() == SECRET
    assert secret == Secret(SECRET) and secret != Secret(SECRET + "x")
    assert secret != SECRET  # never equal to the bare string
    with pytest.raises(AttributeError):
        secret._value = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del secret._value


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"CHAT_PORT": "-1"}, "CHAT_PORT", id="port-negative"),
        pytest.param({"CHAT_PORT": "65536"}, "CHAT_PORT", id="port-65536"),
        pytest.param({"CHAT_AUTH": "foo"}, "CHAT_AUTH", id="auth-foo"),
        pytest.param({"CHAT_AUTH": "none"}, "CHAT_AUTH", id="auth-none"),
        pytest.param({"CHAT_JWT_LEEWAY_S": "-1"}, "CHAT_JWT_LEEWAY_S", id="negative-leeway"),
        pytest.param({"CHAT_JWT_LEEWAY_S": "soon"}, "CHAT_JWT_LEEWAY_S", id="leeway-not-a-number"),
        pytest.param({"CHAT_JWT_USER_CLAIM": ""}, "CHAT_JWT_USER_CLAIM", id="empty-claim"),
        pytest.param({"CHAT_JWT_AUDIENCE": ""}, "CHAT_JWT_AUDIENCE", id="empty-audience"),
        pytest.param({"CHAT_JWT_ISSUER": ""}, "CHAT_JWT_ISSUER", id="empty-issuer"),
    ],
)
def test_bad_values_are_validation_errors_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=f"^{variable}: "):
        load_settings({**JWT_ENV, **env})


def test_a_validation_error_never_echoes_the_secret() -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        load_settings({**JWT_ENV, "CHAT_PORT": "-1"})
    assert SECRET not in str(info.value)


def test_a_secret_that_is_not_a_string_is_a_validation_error() -> None:
    environ: dict[str, Any] = {"CHAT_JWT_SECRET": 12345678901234567890123456789012345}
    with pytest.raises(msgspec.ValidationError, match="CHAT_JWT_SECRET") as info:
        load_settings(environ)
    assert "1234567890" not in str(info.value)


def test_other_variables_are_ignored() -> None:
    settings = load_settings({**JWT_ENV, "CHAT_NOT_A_SETTING": "1", "JWT_SECRET": "x"})
    assert settings.auth == "jwt"
