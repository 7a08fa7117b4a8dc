"""Announcer settings: defaults, and errors that name the variable."""

from __future__ import annotations

import msgspec
import pytest

from chat_announcer.settings import load_settings
from chat_protocol.messages import MAX_TEXT_CHARS


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.announce_interval_s == 3600.0
    assert settings.announce_text == "System maintenance is scheduled for 2 AM UTC."
    assert settings.announce_room_prefix == ""
    assert settings.announce_lease_bucket == "chat_announcer"
    assert settings.announce_lease_replicas == 1
    assert settings.metrics_host == "127.0.0.1"
    assert settings.metrics_port == 9102
    assert settings.nats_url == "nats://127.0.0.1:4222"  # inherited from CommonSettings


def test_every_setting_is_read() -> None:
    settings = load_settings(
        {
            "CHAT_ANNOUNCE_INTERVAL_S": "0.5",
            "CHAT_ANNOUNCE_TEXT": "Hello",
            "CHAT_ANNOUNCE_ROOM_PREFIX": "team-",
            "CHAT_ANNOUNCE_LEASE_BUCKET": "staging_announcer",
            "CHAT_ANNOUNCE_LEASE_REPLICAS": "3",
            "CHAT_METRICS_HOST": "0.0.0.0",
            "CHAT_METRICS_PORT": "0",
            "CHAT_NATS_URL": "nats://nats:4222",
            "GATEWAY_PORT": "1",  # other prefixes are ignored
        }
    )
    assert settings.announce_interval_s == 0.5
    assert settings.announce_text == "Hello"
    assert settings.announce_room_prefix == "team-"
    assert settings.announce_lease_bucket == "staging_announcer"
    assert settings.announce_lease_replicas == 3
    assert settings.metrics_host == "0.0.0.0"
    assert settings.metrics_port == 0
    assert settings.nats_servers == ["nats://nats:4222"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("CHAT_ANNOUNCE_INTERVAL_S", "0", id="interval-zero"),
        pytest.param("CHAT_ANNOUNCE_INTERVAL_S", "-1", id="interval-negative"),
        pytest.param("CHAT_ANNOUNCE_INTERVAL_S", "hourly", id="interval-not-a-number"),
        pytest.param("CHAT_ANNOUNCE_INTERVAL_S", str(367 * 86400), id="interval-over-a-year"),
        pytest.param("CHAT_ANNOUNCE_TEXT", "", id="text-empty"),
        pytest.param("CHAT_ANNOUNCE_TEXT", "x" * (MAX_TEXT_CHARS + 1), id="text-max+1"),
        pytest.param("CHAT_ANNOUNCE_ROOM_PREFIX", "Team-", id="prefix-upper-case"),
        pytest.param("CHAT_ANNOUNCE_ROOM_PREFIX", "team.*", id="prefix-wildcard"),
        pytest.param("CHAT_ANNOUNCE_LEASE_BUCKET", "chat.announcer", id="bucket-dot"),
        pytest.param("CHAT_ANNOUNCE_LEASE_BUCKET", "", id="bucket-empty"),
        pytest.param("CHAT_ANNOUNCE_LEASE_REPLICAS", "0", id="replicas-zero"),
        pytest.param("CHAT_ANNOUNCE_LEASE_REPLICAS", "6", id="replicas-six"),
        pytest.param("CHAT_METRICS_PORT", "65536", id="port-too-big"),
        pytest.param("CHAT_METRICS_PORT", "-1", id="port-negative"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=variable):
        load_settings({variable: value})


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        pytest.param("x", True, id="one-char"),
        pytest.param("x" * MAX_TEXT_CHARS, True, id="max"),
        pytest.param("x" * (MAX_TEXT_CHARS + 1), False, id="max+1"),
    ],
)
def test_text_length_boundaries(text: str, ok: bool) -> None:
    if ok:
        assert load_settings({"CHAT_ANNOUNCE_TEXT": text}).announce_text == text
    else:
        with pytest.raises(msgspec.ValidationError, match="CHAT_ANNOUNCE_TEXT"):
            load_settings({"CHAT_ANNOUNCE_TEXT": text})


def test_the_error_message_is_one_line() -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        load_settings({"CHAT_ANNOUNCE_INTERVAL_S": "0"})
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("CHAT_ANNOUNCE_INTERVAL_S:")
