"""Room and user names: the checks, the msgspec types, and their NATS safety."""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chat_protocol import (
    ChatError,
    InvalidRoomName,
    InvalidUserName,
    RoomName,
    UserName,
    check_room_name,
    check_user_name,
)
from chat_protocol.names import ROOM_NAME_PATTERN

#: Characters a NATS subject token may hold safely (no ".", "*", ">", whitespace).
NATS_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")

#: Examples per property test: 20 keeps each under the 50 ms unit-test budget;
#: set PROPERTY_EXAMPLES (say, 10000) for a deeper search.
PROPERTY_EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "20"))


def convert_room_name(name: Any) -> str:
    return msgspec.convert(name, RoomName)


def convert_user_name(name: Any) -> str:
    return msgspec.convert(name, UserName)


# -- room names -------------------------------------------------------------------

VALID_ROOM_NAMES = [
    pytest.param("a", id="one-char"),
    pytest.param("general", id="word"),
    pytest.param("0day", id="leading-digit"),
    pytest.param("dev_ops-2", id="underscore-and-dash"),
    pytest.param("a" * 64, id="64-chars-max"),
]

INVALID_ROOM_NAMES = [
    pytest.param("a" * 65, id="65-chars-max+1"),
    pytest.param("", id="empty"),
    pytest.param("General", id="uppercase"),
    pytest.param("a.b", id="dot"),
    pytest.param("a*", id="star"),
    pytest.param("a>", id="gt"),
    pytest.param("a b", id="space"),
    pytest.param("a\tb", id="tab"),
    pytest.param("a\r\nb", id="crlf"),
    pytest.param("a\nb", id="lf"),
    pytest.param("-a", id="leading-dash"),
    pytest.param("_a", id="leading-underscore"),
    pytest.param("café", id="non-ascii"),
    pytest.param("a/b", id="slash"),
]

TRAILING_NEWLINE = pytest.param("general\n", id="trailing-newline")


@pytest.mark.parametrize("name", VALID_ROOM_NAMES)
def test_valid_room_names_pass_the_check_and_the_type(name: str) -> None:
    assert check_room_name(name) == name
    assert convert_room_name(name) == name


@pytest.mark.parametrize("name", [*INVALID_ROOM_NAMES, TRAILING_NEWLINE])
def test_check_room_name_rejects(name: str) -> None:
    with pytest.raises(InvalidRoomName):
        check_room_name(name)


@pytest.mark.parametrize(
    "name",
    [
        *INVALID_ROOM_NAMES,
        pytest.param(
            "general\n",
            id="trailing-newline",
        ),
    ],
)
def test_room_name_type_rejects(name: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        convert_room_name(name)


@pytest.mark.parametrize("name", [None, 1, b"general", ["general"]], ids=repr)
def test_check_room_name_rejects_non_strings(name: Any) -> None:
    with pytest.raises(InvalidRoomName):
        check_room_name(name)


def test_invalid_name_errors_are_chat_errors_and_value_errors() -> None:
    assert issubclass(InvalidRoomName, ChatError)
    assert issubclass(InvalidRoomName, ValueError)
    assert issubclass(InvalidUserName, ChatError)
    assert issubclass(InvalidUserName, ValueError)


# -- NATS safety (property) --------------------------------------------------------

#: Names built from the allowed characters and the dangerous ones, so that both
#: valid and almost-valid names come up often.
candidate_names = st.one_of(
    st.from_regex(ROOM_NAME_PATTERN, fullmatch=True),
    st.text(alphabet="az09_-.*> \t\r\nA", max_size=70),
    st.text(max_size=70),
)


def assert_nats_safe(name: str) -> None:
    assert 1 <= len(name) <= 64
    assert set(name) <= NATS_SAFE, name


@settings(max_examples=PROPERTY_EXAMPLES)
@given(candidate_names)
@example("general\n")
def test_any_name_check_room_name_accepts_is_nats_safe(name: str) -> None:
    try:
        check_room_name(name)
    except InvalidRoomName:
        return
    assert_nats_safe(name)


@settings(max_examples=PROPERTY_EXAMPLES)
@given(candidate_names)
@example("general\n")
def test_any_name_the_room_name_type_accepts_is_nats_safe(name: str) -> None:
    try:
        convert_room_name(name)
    except msgspec.ValidationError:
        return
    assert_nats_safe(name)


# -- user names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Charlie", id="word"),
        pytest.param("Mary Jane", id="inner-space"),
        pytest.param("o'brien-smith.jr", id="punctuation"),
        pytest.param("Zoë", id="non-ascii-letter"),
        pytest.param("_bot", id="leading-underscore"),
        pytest.param("x" * 32, id="32-chars-max"),
    ],
)
def test_valid_user_names(name: str) -> None:
    assert check_user_name(name) == name
    assert convert_user_name(name) == name


INVALID_USER_NAMES = [
    pytest.param("x" * 33, id="33-chars-max+1"),
    pytest.param("", id="empty"),
    pytest.param(" bob", id="leading-space"),
    pytest.param("-bob", id="leading-dash"),
    pytest.param("bo\tb", id="tab"),
    pytest.param("bob\r\nX-Admin: 1", id="crlf"),
    pytest.param("bo\x00b", id="nul"),
    pytest.param("bob*", id="star"),
    pytest.param("bob>", id="gt"),
]


@pytest.mark.parametrize("name", [*INVALID_USER_NAMES, pytest.param("bob\n", id="trailing-lf")])
def test_check_user_name_rejects(name: str) -> None:
    with pytest.raises(InvalidUserName):
        check_user_name(name)


@pytest.mark.parametrize(
    "name",
    [
        *INVALID_USER_NAMES,
        pytest.param(
            "bob\n",
            id="trailing-lf",
        ),
    ],
)
def test_user_name_type_rejects(name: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        convert_user_name(name)


@pytest.mark.parametrize("name", [None, 7, b"bob"], ids=repr)
def test_check_user_name_rejects_non_strings(name: Any) -> None:
    with pytest.raises(InvalidUserName):
        check_user_name(name)
