"""The JetStream history's pure parts: reading positions from headers, message ids,
and the stream configuration's validation."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client

from falcon_pachinko import BackendError
from falcon_pachinko.backends.nats import NatsHistory, NatsHistoryConfig
from falcon_pachinko.backends.nats.history import (
    check_server_version,
    default_stream_name,
    message_id,
    parse_position,
    parse_prev,
)
from falcon_pachinko.history import Position
from falcon_pachinko.subjects import Subjects

#: A message as the history stream republishes it (and as reads return it).
REPUBLISHED = {
    "Pachinko-Origin": "0123456789abcdef",
    "Nats-Msg-Id": "5f0c3b1e9a6d4c2b8e7f1a0d3c5b7e9f",
    "Pachinko-Time": "1764669600123",
    "Nats-Stream": "CHAT_HISTORY",
    "Nats-Subject": "chat._h.lobby",
    "Nats-Sequence": "42",
    "Nats-Time-Stamp": "2025-12-02T10:00:00.123456789Z",
    "Nats-Last-Sequence": "17",
}


def with_headers(**changes: str | None) -> dict[str, str]:
    headers = dict(REPUBLISHED)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


def test_a_republished_message_has_its_position_and_prev() -> None:
    position = parse_position(REPUBLISHED)
    assert position == Position(42, "5f0c3b1e9a6d4c2b8e7f1a0d3c5b7e9f", 1764669600123)
    assert parse_prev(REPUBLISHED, 42) == 17


def test_the_first_message_of_a_room_has_prev_zero() -> None:
    assert parse_prev(with_headers(Nats_Last_Sequence="0"), 42) == 0


def test_an_unkeyed_message_has_its_id_in_pachinko_id() -> None:
    headers = with_headers(Nats_Msg_Id=None, Pachinko_Id="0123456789abcdef-2a")
    position = parse_position(headers)
    assert position is not None and position.id == "0123456789abcdef-2a"
    # Pachinko-Id is the id when both are there; Nats-Msg-Id alone is the keyed case
    # (and what messages stored before Pachinko-Id existed carry).
    both = parse_position(with_headers(Pachinko_Id="0123456789abcdef-2a"))
    assert both is not None and both.id == "0123456789abcdef-2a"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"Nats_Sequence": None}, id="no-seq"),
        pytest.param({"Nats_Msg_Id": None}, id="no-id"),
        pytest.param({"Nats_Msg_Id": ""}, id="empty-id"),
        pytest.param({"Nats_Msg_Id": None, "Pachinko_Id": ""}, id="empty-pachinko-id"),
        pytest.param({"Pachinko_Time": None}, id="no-time"),
        pytest.param({"Nats_Sequence": "0"}, id="seq-zero"),
        pytest.param({"Nats_Sequence": "-3"}, id="seq-negative"),
        pytest.param({"Nats_Sequence": "4x"}, id="seq-not-a-number"),
        pytest.param({"Nats_Sequence": " 42"}, id="seq-space"),
        pytest.param({"Nats_Sequence": "٤٢"}, id="seq-non-ascii-digits"),
        pytest.param({"Pachinko_Time": "1.5"}, id="time-float"),
        pytest.param({"Pachinko_Time": "-1"}, id="time-negative"),
        pytest.param({"Pachinko_Time": ""}, id="time-empty"),
    ],
)
def test_malformed_headers_give_no_position(changes: dict[str, str | None]) -> None:
    assert parse_position(with_headers(**changes)) is None


@pytest.mark.parametrize("headers", [None, {}, {"Pachinko-Origin": "n"}])
def test_live_only_traffic_has_no_position(headers: dict[str, str] | None) -> None:
    assert parse_position(headers) is None


@pytest.mark.parametrize("prev", [None, "", "x", "-1", "42", "43", "١"])
def test_a_prev_that_makes_no_sense_is_unknown(prev: str | None) -> None:
    assert parse_prev(with_headers(Nats_Last_Sequence=prev), 42) is None


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=8))
def test_parsing_never_raises(headers: dict[str, str]) -> None:
    position = parse_position(headers)
    if position is not None:
        assert position.seq >= 1 and position.ts >= 0 and position.id
    parse_prev(headers, 10)


# -- message ids ---------------------------------------------------------------


def test_a_key_names_one_message_per_room() -> None:
    first = message_id("lobby", "k-1")
    assert message_id("lobby", "k-1") == first
    assert len(first) == 32 and int(first, 16) >= 0
    assert message_id("other", "k-1") != first
    assert message_id("lobby", "k-2") != first


def test_room_and_key_cannot_run_into_each_other() -> None:
    assert message_id("ab", "c") != message_id("a", "bc")
    assert message_id("a\x00", "b") != message_id("a", "\x00b")


@given(st.text(min_size=1), st.text(), st.text(min_size=1), st.text())
def test_distinct_room_key_pairs_get_distinct_ids(r1: str, k1: str, r2: str, k2: str) -> None:
    if (r1, k1) != (r2, k2):
        assert message_id(r1, k1) != message_id(r2, k2)


# -- configuration -------------------------------------------------------------


def test_the_stream_is_named_after_the_prefix() -> None:
    assert default_stream_name("chat") == "CHAT_HISTORY"
    assert default_stream_name("acme.chat-v2") == "ACME_CHAT-V2_HISTORY"
    assert NatsHistory(Client(), Subjects("a.b"), "n").stream == "A_B_HISTORY"
    custom = NatsHistoryConfig(stream="ROOMS")
    assert NatsHistory(Client(), Subjects(), "n", custom).stream == "ROOMS"


def test_the_stream_is_configured_as_documented() -> None:
    history = NatsHistory(Client(), Subjects("chat"), "n", NatsHistoryConfig())
    config = history.stream_config()
    assert config.name == "CHAT_HISTORY"
    assert config.subjects == ["chat._h.*"]
    assert config.republish is not None
    assert (config.republish.src, config.republish.dest) == ("chat._h.*", "chat.{{wildcard(1)}}")
    assert config.allow_direct is True
    assert config.max_msgs_per_subject == 1000
    assert config.max_age == 7 * 86400
    assert config.max_bytes == 1 << 30
    assert config.duplicate_window == 120
    assert config.num_replicas == 1
    assert config.storage == "file" and config.discard == "old"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"stream": "A.B"}, "stream name", id="stream-dot"),
        pytest.param({"stream": ""}, "stream name", id="stream-empty"),
        pytest.param({"stream": "x" * 256}, "stream name", id="stream-long"),
        pytest.param({"stream": "a b"}, "stream name", id="stream-space"),
        pytest.param({"max_messages_per_room": 0}, "max_messages_per_room", id="per-room-0"),
        pytest.param({"max_messages_per_room": True}, "max_messages_per_room", id="per-room-bool"),
        pytest.param({"max_messages_per_room": 1.5}, "max_messages_per_room", id="per-room-float"),
        pytest.param({"max_bytes": 0}, "max_bytes", id="bytes-0"),
        pytest.param({"replicas": 0}, "replicas", id="replicas-0"),
        pytest.param({"replicas": 6}, "replicas", id="replicas-6"),
        pytest.param({"max_age_s": 0.05}, "max_age_s", id="age-too-short"),
        pytest.param({"max_age_s": math.inf}, "max_age_s", id="age-inf"),
        pytest.param({"max_age_s": math.nan}, "max_age_s", id="age-nan"),
        pytest.param({"dedup_window_s": 0}, "dedup_window_s", id="dedup-0"),
        pytest.param({"max_age_s": 60, "dedup_window_s": 61}, "exceed", id="dedup-over-age"),
        pytest.param({"storage": "disk"}, "storage", id="storage"),
    ],
)
def test_invalid_configurations_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NatsHistoryConfig(**options)


def test_a_short_lived_store_is_a_valid_configuration() -> None:
    config = NatsHistoryConfig(max_age_s=0.5, dedup_window_s=0.2, storage="memory", replicas=3)
    assert (config.max_age_s, config.dedup_window_s, config.storage) == (0.5, 0.2, "memory")


def test_a_prefix_too_long_for_a_stream_name_is_refused() -> None:
    with pytest.raises(ValueError, match="stream name"):
        NatsHistory(Client(), Subjects("p" * 250), "n")


def test_a_nats_server_older_than_2_11_is_refused_with_the_reason() -> None:
    for fine in ("2.11.0", "2.15.3", "3.0.0", "2.12.1-beta.2", "", "0.0.0"):
        check_server_version(fine)
    with pytest.raises(BackendError, match=r"2\.11 or newer.*2\.10\.22"):
        check_server_version("2.10.22")
