"""RoomState: the client's rules, frame by frame (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat_client import (
    Failed,
    HistoryDone,
    Joined,
    Left,
    Message,
    Notice,
    RoomState,
    Roster,
    Typing,
    Unrecognized,
)
from chat_protocol.messages import MAX_TEXT_CHARS


def new_message(seq: int, user: str = "Bob", **extra: Any) -> dict[str, Any]:
    message = {"user": user, "text": f"m{seq}", "id": f"id-{seq}", "seq": seq, "ts": 1_000 + seq}
    return message | extra


def frame(kind: str, payload: dict[str, Any]) -> str:
    return json.dumps({"type": kind, "payload": payload})


def history(*seqs: int, complete: bool = True, resumed: bool | None = None) -> str:
    page: dict[str, Any] = {"messages": [new_message(s) for s in seqs], "complete": complete}
    if resumed is not None:
        page["resumed"] = resumed
    return frame("serverHistory", page)


def live(seq: int, **extra: Any) -> str:
    return frame("serverNewMessage", new_message(seq, **extra))


def texts(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, Message)]


def test_a_join_gives_welcome_roster_history_then_live_and_moves_the_cursor() -> None:
    state = RoomState()
    assert state.query() == {}
    events = [
        *state.receive(frame("serverSystemMessage", {"text": "Welcome Ann to room 'general'!"})),
        *state.receive(frame("serverPresence", {"users": ["Ann", "Bob"]})),
        *state.receive(history(3, 5)),
        *state.receive(live(8)),
    ]
    assert events[0] == Notice("Welcome Ann to room 'general'!")
    assert events[1] == Roster(("Ann", "Bob"))
    assert [(e.seq, e.from_history) for e in events if isinstance(e, Message)] == [
        (3, True),
        (5, True),
        (8, False),
    ]
    assert HistoryDone(complete=True) in events
    assert state.cursor == 8 and state.oldest == 3
    assert state.query() == {"since": "8"}


def test_repeats_are_dropped_by_id_whatever_frame_brings_them() -> None:
    state = RoomState()
    assert texts(state.receive(live(4))) == ["m4"]
    # A resume that repeats the last message seen, then goes on.
    assert texts(state.receive(history(4, 6, resumed=True))) == ["m6"]
    assert texts(state.receive(live(6))) == []
    assert texts(state.receive(live(7))) == ["m7"]


def test_live_only_messages_have_no_id_and_are_never_dropped() -> None:
    state = RoomState()
    plain = frame("serverNewMessage", {"user": "Bob", "text": "hi"})
    assert texts(state.receive(plain) + state.receive(plain)) == ["hi", "hi"]
    assert state.cursor is None


def test_a_send_is_pending_until_echoed_and_resent_with_the_same_id() -> None:
    state = RoomState()
    first, frame1 = state.send("one")
    second, frame2 = state.send("two", client_msg_id="c-2")
    assert second == "c-2" and first != second
    sent = msgspec.json.decode(frame1)
    assert sent == {"type": "clientSendMessage", "payload": {"text": "one", "clientMsgId": first}}
    assert state.resend() == [frame1, frame2]
    echo = state.receive(live(9, user="Ann", text="one", clientMsgId=first))
    assert echo == [
        Message(user="Ann", text="one", id="id-9", seq=9, ts=1009, client_msg_id=first, mine=True)
    ]
    assert state.resend() == [frame2]
    # An echo that is a repeat (the stored original of a resend) still ends the wait.
    state.receive(live(9, user="Ann", text="two", clientMsgId="c-2"))
    assert state.resend() == []


def test_someone_elses_message_is_not_mine() -> None:
    state = RoomState()
    state.send("one", client_msg_id="c-1")
    (event,) = state.receive(live(2, clientMsgId="c-other"))
    assert isinstance(event, Message) and not event.mine
    assert list(state.pending) == ["c-1"]


@pytest.mark.parametrize(
    ("text", "client_msg_id"),
    [("", None), ("x" * (MAX_TEXT_CHARS + 1), None), ("ok", ""), ("ok", "c" * 65)],
)
def test_a_send_the_gateway_would_refuse_is_refused_here(
    text: str, client_msg_id: str | None
) -> None:
    state = RoomState()
    with pytest.raises(ValueError, match="not a message the chat accepts"):
        state.send(text, client_msg_id)
    assert not state.pending


def test_the_roster_follows_joins_and_leaves() -> None:
    state = RoomState()
    state.receive(frame("serverPresence", {"users": ["Ann"]}))
    assert state.receive(frame("serverUserJoined", {"user": "Bob"})) == [Joined("Bob")]
    assert state.users == {"Ann", "Bob"}
    assert state.receive(frame("serverUserLeft", {"user": "Ann"})) == [Left("Ann")]
    assert state.users == {"Bob"}


def test_other_server_messages_become_their_events() -> None:
    state = RoomState()
    assert state.receive(frame("serverUserTyping", {"user": "Bob", "isTyping": True})) == [
        Typing("Bob", True)
    ]
    assert state.receive(frame("serverSystemAnnouncement", {"text": "news"})) == [
        Notice("news", announcement=True)
    ]
    assert state.receive(frame("serverError", {"error": "slow down", "code": "rate_limited"})) == [
        Failed("rate_limited", "slow down")
    ]
    assert state.receive(history(complete=False, resumed=False)) == [
        HistoryDone(complete=False, resumed=False)
    ]


def test_scrolling_back_asks_for_what_is_older_than_the_oldest_seen() -> None:
    state = RoomState()
    assert msgspec.json.decode(state.fetch_older(10)) == {
        "type": "clientFetchHistory",
        "payload": {"before": None, "limit": 10},
    }
    state.receive(history(40, 41))
    assert msgspec.json.decode(state.fetch_older(10))["payload"] == {"before": 40, "limit": 10}
    state.receive(history(20, 30))
    assert state.oldest == 20 and state.cursor == 41


def test_typing_frames() -> None:
    assert msgspec.json.decode(RoomState.typing(True))["type"] == "clientStartTyping"
    assert msgspec.json.decode(RoomState.typing(False))["type"] == "clientStopTyping"


def test_the_ids_remembered_are_bounded() -> None:
    state = RoomState(seen_ids=2)
    for seq in (1, 2, 3):
        state.receive(live(seq))
    assert texts(state.receive(live(1))) == ["m1"]  # forgotten, so shown again
    assert texts(state.receive(live(3))) == []


def test_a_cursor_from_an_earlier_run_resumes_at_once() -> None:
    assert RoomState(since=41).query() == {"since": "41"}
    with pytest.raises(ValueError):
        RoomState(since=-1)
    with pytest.raises(ValueError):
        RoomState(seen_ids=0)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        b"\xff\xfe",
        '{"type":"serverFromTheFuture","payload":{}}',
        '{"type":"serverNewMessage","payload":{"user":"Bob"}}',
        "[]",
    ],
)
def test_what_the_client_cannot_read_is_unrecognized(raw: str | bytes) -> None:
    assert RoomState().receive(raw) == [Unrecognized(raw)]


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_receiving_never_raises(raw: str | bytes) -> None:
    RoomState().receive(raw)
