"""chat.<room> subjects: the library builds them from PREFIX, and chat names map to themselves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat_protocol import InvalidRoomName, check_room_name, subjects
from chat_protocol.names import ROOM_NAME_PATTERN
from falcon_pachinko.subjects import Subjects

room_names = st.from_regex(ROOM_NAME_PATTERN, fullmatch=True)
chat = Subjects(subjects.PREFIX)


def test_room_subject_is_chat_dot_name() -> None:
    assert chat.room("general") == "chat.general"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a.b", id="dot"),
        pytest.param("*", id="star"),
        pytest.param(">", id="gt"),
        pytest.param("a b", id="space"),
        pytest.param("general\n", id="trailing-newline"),
    ],
)
def test_names_that_could_break_a_subject_are_refused_and_would_be_encoded(name: str) -> None:
    with pytest.raises(InvalidRoomName):
        check_room_name(name)
    # Even past the chat's check, the library would keep them to one token.
    assert chat.room(name).count(".") == 1


def test_the_empty_name_is_refused_by_both() -> None:
    with pytest.raises(InvalidRoomName):
        check_room_name("")
    with pytest.raises(ValueError):
        chat.room("")


@given(room_names)
def test_every_chat_room_name_is_its_own_subject_token(name: str) -> None:
    assert chat.room(check_room_name(name)) == f"{subjects.PREFIX}.{name}"
