"""RoomPatterns: exact names and ``prefix*`` patterns, and the RoomPolicy hook."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falcon_pachinko.permissions import (
    ALLOW_ALL,
    MAX_ROOM_PATTERNS,
    RoomPatterns,
    RoomPolicy,
)

# Names without '*', so that an entry is exact unless a test appends the wildcard.
names = st.text(st.characters(blacklist_characters="*"), min_size=1, max_size=40)
rooms = st.text(max_size=80)


@given(prefix=names, room=rooms)
def test_a_name_matches_a_prefix_pattern_iff_it_starts_with_the_prefix(
    prefix: str, room: str
) -> None:
    assert RoomPatterns.parse([prefix + "*"]).allows(room) == room.startswith(prefix)


@given(entry=names, room=rooms)
def test_an_exact_entry_matches_only_itself(entry: str, room: str) -> None:
    assert RoomPatterns.parse([entry]).allows(room) == (room == entry)


@given(entries=st.lists(names | names.map(lambda n: n + "*"), max_size=10), room=rooms)
def test_patterns_allow_a_room_iff_some_entry_does(entries: list[str], room: str) -> None:
    combined = RoomPatterns.parse(entries).allows(room)
    assert combined == any(RoomPatterns.parse([entry]).allows(room) for entry in entries)


@given(prefix=st.text("abc", min_size=1, max_size=10), tail=st.text("xyz", min_size=65))
def test_a_long_name_that_shares_no_prefix_matches_nothing(prefix: str, tail: str) -> None:
    patterns = RoomPatterns.parse([prefix, prefix + "*"])
    assert not patterns.allows(tail)


def test_team_star_allows_the_team_rooms_only() -> None:
    patterns = RoomPatterns.parse(["general", "team-*"])
    assert patterns.allows("general")
    assert patterns.allows("team-")
    assert patterns.allows("team-red")
    assert not patterns.allows("team")
    assert not patterns.allows("generals")
    assert not patterns.allows("xteam-red")


def test_a_lone_star_allows_every_room_and_no_entries_allow_none() -> None:
    assert RoomPatterns.parse(["*"]).allows("anything")
    assert not RoomPatterns.parse([]).allows("general")


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param(["te*am"], id="star-in-the-middle"),
        pytest.param(["**"], id="double-star"),
        pytest.param(["*team"], id="leading-star"),
        pytest.param([""], id="empty-entry"),
        pytest.param([7], id="not-a-string"),
        pytest.param([None], id="null"),
        pytest.param("team-*", id="a-string-not-a-list"),
        pytest.param(["x" * 258], id="too-long"),
        pytest.param([f"r{i}" for i in range(MAX_ROOM_PATTERNS + 1)], id="too-many"),
    ],
)
def test_malformed_patterns_are_refused(entries: object) -> None:
    with pytest.raises(ValueError):
        RoomPatterns.parse(entries)  # type: ignore[arg-type]


def test_the_maximum_number_of_patterns_is_accepted() -> None:
    patterns = RoomPatterns.parse([f"r{i}" for i in range(MAX_ROOM_PATTERNS)])
    assert patterns.allows(f"r{MAX_ROOM_PATTERNS - 1}")


def test_policies_are_room_policies() -> None:
    assert isinstance(ALLOW_ALL, RoomPolicy)
    assert isinstance(RoomPatterns.parse(["a"]), RoomPolicy)
    assert ALLOW_ALL.allows("")
