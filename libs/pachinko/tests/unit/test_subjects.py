"""Subject naming: room tokens are injective and NATS-safe, whatever the room name."""

from __future__ import annotations

import base64
import re
import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from falcon_pachinko.subjects import (
    MAX_ROOM_NAME_CHARS,
    Subjects,
    check_prefix,
    check_room,
    room_token,
)

#: Every character a token may contain: nothing NATS gives a meaning to.
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]+")

#: Any room name the library accepts, lone surrogates included (they reach Python
#: strings through ``surrogateescape`` and ``\ud800`` JSON escapes).
room_names = st.text(
    alphabet=st.characters(exclude_categories=()), min_size=1, max_size=MAX_ROOM_NAME_CHARS
)
plain_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True)

PREFIXES = ["chat", "a.b", "x-y_z.0"]


def decode_token(token: str) -> str:
    """The inverse of ``room_token``: the existence of this function is injectivity."""
    if not token.startswith("_"):
        return token
    body = token[1:].upper()
    body += "=" * (-len(body) % 8)
    return base64.b32decode(body).decode("utf-8", "surrogatepass")


# -- room_token ----------------------------------------------------------------


@given(room_names)
def test_token_is_a_single_safe_subject_token(room: str) -> None:
    token = room_token(room)
    assert _SAFE_TOKEN.fullmatch(token), token
    for forbidden in (".", "*", ">"):
        assert forbidden not in token
    assert not any(c.isspace() or unicodedata.category(c).startswith("C") for c in token)
    assert Subjects("chat").room(room).split(".") == ["chat", token]


@given(room_names)
def test_token_decodes_back_to_the_room_name(room: str) -> None:
    assert decode_token(room_token(room)) == room


@given(room_names, room_names)
def test_distinct_names_get_distinct_tokens(a: str, b: str) -> None:
    assume(a != b)
    assert room_token(a) != room_token(b)


@given(plain_names)
def test_plain_names_are_their_own_token(room: str) -> None:
    assert room_token(room) == room


@given(room_names)
def test_other_names_are_encoded_behind_an_underscore(room: str) -> None:
    assume(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", room) is None)
    token = room_token(room)
    assert token.startswith("_")
    assert re.fullmatch(r"_[a-z2-7]+", token), token


@pytest.mark.parametrize(
    ("room", "token"),
    [
        pytest.param("general", "general", id="plain"),
        pytest.param("chat_general", "chat_general", id="plain-underscore"),
        pytest.param("a.b", "_mexge", id="dot"),
        pytest.param("*", "_fi", id="star"),
        pytest.param(">", "_hy", id="gt"),
        pytest.param("a b", "_meqge", id="space"),
        pytest.param("_mexge", "_l5wwk6dhmu", id="looks-encoded"),
        pytest.param("-x", "_fv4a", id="leading-dash"),
        pytest.param("é", "_youq", id="non-ascii"),
    ],
)
def test_token_examples(room: str, token: str) -> None:
    assert room_token(room) == token


def test_a_name_that_looks_like_a_token_does_not_collide_with_it() -> None:
    assert room_token("_mexge") != room_token("a.b")
    assert room_token("A") != room_token("a")


def test_longest_name_stays_well_inside_the_nats_control_line() -> None:
    longest = "\U0010ffff" * MAX_ROOM_NAME_CHARS  # 4 UTF-8 bytes per character
    assert len(Subjects("chat").room(longest)) < 2048


# -- check_room ----------------------------------------------------------------


@pytest.mark.parametrize(
    "room",
    [
        pytest.param("r", id="one-char"),
        pytest.param("r" * MAX_ROOM_NAME_CHARS, id="max-chars"),
        pytest.param("é" * MAX_ROOM_NAME_CHARS, id="max-chars-multibyte"),
    ],
)
def test_check_room_accepts(room: str) -> None:
    assert check_room(room) is room
    room_token(room)


@pytest.mark.parametrize(
    "room",
    [
        pytest.param("r" * (MAX_ROOM_NAME_CHARS + 1), id="max-plus-one"),
        pytest.param("", id="empty"),
        pytest.param(None, id="none"),
        pytest.param(7, id="int"),
        pytest.param(b"room", id="bytes"),
    ],
)
def test_check_room_rejects(room: object) -> None:
    with pytest.raises(ValueError):
        check_room(room)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        room_token(room)  # type: ignore[arg-type]


# -- check_prefix --------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_check_prefix_accepts_literal_subjects(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("", id="empty"),
        pytest.param("chat.", id="trailing-dot"),
        pytest.param(".chat", id="leading-dot"),
        pytest.param("a..b", id="empty-token"),
        pytest.param("chat.*", id="star"),
        pytest.param("chat.>", id="gt"),
        pytest.param("ch at", id="space"),
        pytest.param("chat\n", id="newline"),
        pytest.param("chät", id="non-ascii"),
        pytest.param(None, id="none"),
        pytest.param(1, id="int"),
    ],
)
def test_check_prefix_rejects(prefix: object) -> None:
    with pytest.raises(ValueError):
        check_prefix(prefix)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Subjects(prefix)  # type: ignore[arg-type]


# -- Subjects ------------------------------------------------------------------


def _control(subjects: Subjects) -> list[str]:
    return [
        subjects.events,
        subjects.query_rooms,
        subjects.query_members,
        subjects.sync_all,
        subjects.direct,
    ]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_subjects_live_under_the_prefix(prefix: str) -> None:
    subjects = Subjects(prefix)
    assert subjects.room("general") == f"{prefix}.general"
    assert subjects.sync_node("n1") == f"{subjects.sync_all}.n1"
    for subject in [*_control(subjects), subjects.sync_node("n1")]:
        assert subject.startswith(prefix + ".")
    assert len(set(_control(subjects))) == len(_control(subjects))


@pytest.mark.parametrize("prefix", PREFIXES)
@given(room=room_names)
def test_no_room_subject_is_a_control_subject(prefix: str, room: str) -> None:
    subjects = Subjects(prefix)
    subject = subjects.room(room)
    assert subject not in _control(subjects)
    assert not subject.startswith(subjects.sync_all + ".")
    # Room subjects have one token more than the prefix, control subjects two or more.
    prefix_tokens = len(prefix.split("."))
    assert len(subject.split(".")) == prefix_tokens + 1
    assert all(len(s.split(".")) >= prefix_tokens + 2 for s in _control(subjects))


@pytest.mark.parametrize("room", ["_dir", "_dir.events", "_dir.sync", "dir"])
def test_rooms_named_like_control_tokens_stay_rooms(room: str) -> None:
    subjects = Subjects()
    assert subjects.room(room) not in _control(subjects)
    assert not subjects.room(room).startswith("chat._dir.")


# -- stored subjects (durable rooms) -------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
@given(room=room_names)
def test_a_stored_subject_is_the_room_subject_one_token_deeper(prefix: str, room: str) -> None:
    subjects = Subjects(prefix)
    stored, live = subjects.stored(room), subjects.room(room)
    depth = prefix.count(".") + 1
    assert stored.split(".") == [*prefix.split("."), "_h", room_token(room)]
    # The stream captures it (``<prefix>._h.*``) and republishes it on the room's
    # subject, its wildcard token kept: ``<prefix>.{{wildcard(1)}}``.
    assert stored_all_matches(subjects.stored_all, stored)
    assert f"{prefix}.{stored.split('.')[depth + 1]}" == live
    assert stored != live and stored not in _control(subjects)


def stored_all_matches(pattern: str, subject: str) -> bool:
    tokens, wanted = subject.split("."), pattern.split(".")
    return len(tokens) == len(wanted) and all(
        w == "*" or w == t for w, t in zip(wanted, tokens, strict=True)
    )


@pytest.mark.parametrize("prefix", PREFIXES)
@given(room=room_names)
def test_no_room_subject_is_a_stored_subject(prefix: str, room: str) -> None:
    subjects = Subjects(prefix)
    assert not stored_all_matches(subjects.stored_all, subjects.room(room))
