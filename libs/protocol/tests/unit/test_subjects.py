"""chat.<room> subjects, and their agreement with falcon_pachinko's encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat_protocol import InvalidRoomName, subjects
from chat_protocol.names import ROOM_NAME_PATTERN
from falcon_pachinko.subjects import Subjects

room_names = st.from_regex(ROOM_NAME_PATTERN, fullmatch=True)


def test_room_subject_is_chat_dot_name() -> None:
    assert subjects.room("general") == "chat.general"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a.b", id="dot"),
        pytest.param("*", id="star"),
        pytest.param(">", id="gt"),
        pytest.param("a b", id="space"),
        pytest.param("", id="empty"),
        pytest.param("general\n", id="trailing-newline"),
    ],
)
def test_names_that_could_break_a_subject_are_rejected(name: str) -> None:
    with pytest.raises(InvalidRoomName):
        subjects.room(name)


@given(room_names)
def test_the_chat_and_the_library_agree_on_every_room_subject(name: str) -> None:
    assert subjects.room(name) == Subjects(subjects.PREFIX).room(name)
    assert subjects.room(name).count(".") == 1
