"""CommonSettings: bad values are refused when loaded, naming the variable."""

from __future__ import annotations

import msgspec
import pytest

from chat_runtime.settings import CommonSettings, Secret, load_settings


@pytest.mark.parametrize(
    ("url", "servers"),
    [
        pytest.param("nats://127.0.0.1:4222", ["nats://127.0.0.1:4222"], id="one"),
        pytest.param(
            "nats://a:4222, tls://b:4222,nats://c:4222",
            ["nats://a:4222", "tls://b:4222", "nats://c:4222"],
            id="cluster",
        ),
    ],
)
def test_nats_urls_are_split_into_servers(url: str, servers: list[str]) -> None:
    assert load_settings(CommonSettings, {"CHAT_NATS_URL": url}).nats_servers == servers


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("foo", id="no-scheme"),
        pytest.param("http://127.0.0.1:4222", id="wrong-scheme"),
        pytest.param("nats://a:4222,", id="trailing-comma"),
        pytest.param("nats://a:4222,,nats://b:4222", id="empty-entry"),
        pytest.param("", id="empty"),
    ],
)
def test_a_bad_nats_url_is_refused_at_load_naming_the_variable(url: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="^CHAT_NATS_URL: "):
        load_settings(CommonSettings, {"CHAT_NATS_URL": url})


def test_other_prefixes_and_unknown_variables_are_ignored() -> None:
    settings = load_settings(CommonSettings, {"NATS_URL": "foo", "CHAT_NOT_A_SETTING": "1"})
    assert settings == CommonSettings()


def test_secrets_never_show() -> None:
    secret = Secret("hunter2-hunter2-hunter2-hunter2-x")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert secret.reveal() == "hunter2-hunter2-hunter2-hunter2-x"


def test_the_nats_connect_timeout_defaults_to_trying_forever() -> None:
    assert load_settings(CommonSettings, {}).nats_connect_timeout_s == 0
    loaded = load_settings(CommonSettings, {"CHAT_NATS_CONNECT_TIMEOUT_S": "30"})
    assert loaded.nats_connect_timeout_s == 30
    with pytest.raises(msgspec.ValidationError, match="^CHAT_NATS_CONNECT_TIMEOUT_S: "):
        load_settings(CommonSettings, {"CHAT_NATS_CONNECT_TIMEOUT_S": "-1"})
