"""The sans-I/O session: bytes and a clock in, decisions and actions out. No sockets."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from falcon_pachinko import CloseCode, WebSocketResource, handles_message
from falcon_pachinko.session import (
    Admission,
    Close,
    Dispatch,
    Drop,
    Invalid,
    Outbound,
    QueueLimits,
    Send,
    Session,
    State,
    Unhandled,
    truncate_reason,
    utf8_size,
)


class Clock:
    """A fake clock: time moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self, step: float = 0.0) -> float:
        self.now += step
        return self.now


class Text(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: str


class Chat(WebSocketResource):
    @handles_message("say")
    async def say(self, ws: Any, payload: Text) -> None: ...


def make(max_messages: int = 1024, max_bytes: int = 4 * 1024 * 1024) -> Session:
    limits = QueueLimits(max_messages=max_messages, max_bytes=max_bytes)
    return Session(limits, Chat._pachinko_handlers)


def opened(clock: Clock, **limits: int) -> Session:
    session = make(**limits)
    session.accept(clock())
    return session


def drain(session: Session) -> list[Outbound]:
    """Everything the writer would write now, in order."""
    out: list[Outbound] = []
    while (item := session.next_frame()) is not None:
        out.append(item)
    return out


def texts(items: list[Outbound]) -> list[str | bytes | tuple[int, str | None]]:
    return [(i.code, i.reason) if isinstance(i, Close) else i.payload for i in items]


@pytest.fixture
def clock() -> Clock:
    return Clock()


# -- receive: every decision kind -------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        pytest.param(b'{"type":"say","payload":{"text":"hi"}}', Dispatch, id="dispatch-bytes"),
        pytest.param('{"type":"say","payload":{"text":"hi"}}', Dispatch, id="dispatch-str"),
        pytest.param(b'{"type":"say","payload":{"text":1}}', Invalid, id="invalid-type"),
        pytest.param(b'{"type":"say","payload":{"text":"a","x":1}}', Invalid, id="invalid-extra"),
        pytest.param(b'{"type":"shout"}', Unhandled, id="unhandled-type"),
        pytest.param(b"\xff\x00garbage", Unhandled, id="unhandled-garbage"),
        pytest.param(b"", Unhandled, id="unhandled-empty"),
        pytest.param(b"[" * 3000 + b"]" * 3000, Unhandled, id="unhandled-deep-lists"),
        pytest.param(
            b'{"type":"say","payload":' + b"[" * 3000 + b"]" * 3000 + b"}",
            Unhandled | Invalid,
            id="deep-payload",
        ),
    ],
)
def test_receive_decides_what_a_frame_is_for(clock: Clock, frame: str | bytes, kind: Any) -> None:
    session = opened(clock)

    decision = session.receive(frame, clock(0.1))

    assert isinstance(decision, kind)
    assert session.actions() == []
    assert session.state is State.OPEN  # bad input never closes the connection


def test_a_dispatch_carries_the_handler_and_the_decoded_payload(clock: Clock) -> None:
    session = opened(clock)
    decision = session.receive(b'{"type":"say","payload":{"text":"hi"}}', clock())
    assert decision == Dispatch(message_type="say", attr="say", payload=Text("hi"))


def test_a_session_without_handlers_leaves_every_frame_unhandled(clock: Clock) -> None:
    session = Session(QueueLimits())
    session.accept(clock())
    assert session.receive(b'{"type":"say","payload":{"text":"hi"}}', clock()) == Unhandled()


@pytest.mark.parametrize("ending", ["handshake", "closing", "aborted", "peer-closed"])
def test_frames_are_dropped_unless_the_session_is_open(clock: Clock, ending: str) -> None:
    session = make() if ending == "handshake" else opened(clock)
    if ending == "closing":
        session.close(CloseCode.NORMAL)
    elif ending == "aborted":
        session.abort(CloseCode.SERVICE_RESTART)
    elif ending == "peer-closed":
        session.peer_closed(1001)

    assert session.receive(b'{"type":"say","payload":{"text":"hi"}}', clock()) == Drop()


def test_tick_is_a_hook_that_decides_nothing_yet(clock: Clock) -> None:
    session = opened(clock)
    session.tick(clock(3600.0))
    assert session.actions() == [] and session.state is State.OPEN


# -- the close codes the library sends ----------------------------------------------


def test_a_rejected_handshake_records_1008_and_sends_nothing(clock: Clock) -> None:
    session = make()
    assert session.send(Send.of_text("welcome"), clock()) is Admission.QUEUED
    assert session.offer(Send.of_text("room"), clock())

    session.close(CloseCode.POLICY_VIOLATION)

    assert session.closed and session.close_code == 1008
    assert session.actions() == []  # the adapter refuses the handshake itself
    assert drain(session) == [] and session.backlog == 0 and session.queued_bytes == 0


def test_a_policy_close_when_open_flushes_then_sends_1008(clock: Clock) -> None:
    session = opened(clock)
    session.offer(Send.of_text("a"), clock())
    session.close(CloseCode.POLICY_VIOLATION, "policy")
    assert texts(drain(session)) == ["a", (1008, "policy")]
    assert session.state is State.CLOSED


def test_an_internal_failure_aborts_with_1011_without_detail(clock: Clock) -> None:
    session = opened(clock)
    session.offer(Send.of_text("queued"), clock())

    session.fail()

    assert session.actions() == [Close(1011, "internal error")]
    assert session.close_code == CloseCode.INTERNAL_ERROR
    assert drain(session) == [] and session.output_ended


def test_overflowing_the_queue_during_the_handshake_aborts_with_1011(clock: Clock) -> None:
    session = make(max_messages=2)
    assert session.send(Send.of_text("one"), clock()) is Admission.QUEUED
    assert session.offer(Send.of_text("room"), clock())

    # Nothing drains before the accept: waiting (FULL) would never end.
    assert session.send(Send.of_text("three"), clock()) is Admission.CLOSED

    assert session.actions() == [Close(1011, "handshake queue overflow")]
    assert session.close_code == CloseCode.INTERNAL_ERROR
    session.accept(clock())  # an accept under way when it happened changes nothing
    assert drain(session) == []


def test_a_slow_consumer_is_aborted_with_4001_and_its_queue_dropped(clock: Clock) -> None:
    session = opened(clock, max_messages=2)
    assert session.offer(Send.of_text("a"), clock())
    assert session.offer(Send.of_text("b"), clock())

    assert not session.offer(Send.of_text("c"), clock())

    assert session.actions() == [Close(4001, "slow consumer")]
    assert session.close_code == CloseCode.SLOW_CONSUMER
    assert drain(session) == [] and session.queued_bytes == 0
    assert not session.offer(Send.of_text("late"), clock())
    assert session.actions() == []  # one close only


def test_a_shutdown_abort_sends_1012_at_once_even_during_a_graceful_close(clock: Clock) -> None:
    session = opened(clock)
    session.offer(Send.of_text("a"), clock())
    session.close(4100, "bye")

    session.abort(CloseCode.SERVICE_RESTART, "server shutting down")
    session.abort(CloseCode.SERVICE_RESTART, "again")

    assert session.actions() == [Close(1012, "server shutting down")]
    assert drain(session) == []
    assert session.close_code == 4100  # the first decision is what the resource sees


def test_a_peer_close_ends_everything_without_actions(clock: Clock) -> None:
    session = opened(clock)
    session.offer(Send.of_text("unsent"), clock())

    session.peer_closed(1001)
    session.abort(CloseCode.SERVICE_RESTART)

    assert session.state is State.CLOSED and session.close_code == 1001
    assert session.actions() == [] and drain(session) == []
    assert session.send(Send.of_text("late"), clock()) is Admission.CLOSED


# -- queue limits at the boundary ------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "frames", "overflows"),
    [
        pytest.param({"max_messages": 3}, ["m"] * 3, False, id="messages-at-max"),
        pytest.param({"max_messages": 3}, ["m"] * 4, True, id="messages-max+1"),
        pytest.param({"max_bytes": 10}, ["12345", "12345"], False, id="bytes-at-max"),
        pytest.param({"max_bytes": 10}, ["12345", "123456"], True, id="bytes-max+1"),
        pytest.param({"max_bytes": 10}, ["é" * 5], False, id="utf8-2-byte-at-max"),
        pytest.param({"max_bytes": 10}, ["é" * 5, "x"], True, id="utf8-2-byte-max+1"),
        pytest.param({"max_bytes": 12}, ["🙂" * 3], False, id="utf8-4-byte-at-max"),
        pytest.param({"max_bytes": 12}, ["🙂" * 3, "x"], True, id="utf8-4-byte-max+1"),
        pytest.param({"max_bytes": 10}, [b"\xc3\xa9" * 5], False, id="utf8-bytes-at-max"),
        pytest.param({"max_bytes": 10}, [b"\xc3\xa9" * 5 + b"x"], True, id="utf8-bytes-max+1"),
    ],
)
def test_offer_overflows_only_past_the_limits(
    clock: Clock, limits: dict[str, int], frames: list[str | bytes], overflows: bool
) -> None:
    session = opened(clock, **limits)

    results = [
        session.offer(Send.of_text(f) if isinstance(f, str) else Send.of_utf8(f), clock())
        for f in frames
    ]

    assert results == [True] * (len(frames) - 1) + [not overflows]
    assert session.closed is overflows
    assert session.actions() == ([Close(4001, "slow consumer")] if overflows else [])


@pytest.mark.parametrize(
    ("limits", "sizes", "full"),
    [
        pytest.param({"max_messages": 2}, [1, 1], False, id="messages-at-max"),
        pytest.param({"max_messages": 2}, [1, 1, 1], True, id="messages-max+1"),
        pytest.param({"max_bytes": 10}, [4, 6], False, id="bytes-at-max"),
        pytest.param({"max_bytes": 10}, [4, 7], True, id="bytes-max+1"),
    ],
)
def test_a_direct_send_past_the_limits_waits_and_never_closes(
    clock: Clock, limits: dict[str, int], sizes: list[int], full: bool
) -> None:
    session = opened(clock, **limits)

    results = [session.send(Send.of_binary(b"x" * size), clock()) for size in sizes]

    assert results[-1] is (Admission.FULL if full else Admission.QUEUED)
    assert not session.closed and session.actions() == []
    if full:
        session.next_frame()  # the writer takes one: space again
        assert session.send(Send.of_binary(b"x" * sizes[-1]), clock()) is Admission.QUEUED


def test_a_frame_larger_than_the_byte_budget_goes_out_alone(clock: Clock) -> None:
    session = opened(clock, max_bytes=4)
    assert session.send(Send.of_text("12345"), clock()) is Admission.QUEUED
    assert session.send(Send.of_text("x"), clock()) is Admission.FULL
    assert texts(drain(session)) == ["12345"]


def test_taking_a_frame_releases_its_bytes(clock: Clock) -> None:
    session = opened(clock)
    session.offer(Send.of_text("é"), clock())
    session.send(Send.of_binary(b"abc"), clock())
    assert (session.backlog, session.queued_bytes) == (2, 5)
    session.next_frame()
    assert (session.backlog, session.queued_bytes) == (1, 3)


def test_early_frames_count_against_the_limits(clock: Clock) -> None:
    session = make(max_messages=2)
    session.send(Send.of_text("early"), clock())
    session.offer(Send.of_text("room"), clock())
    assert not session.offer(Send.of_text("room 2"), clock())
    assert session.close_code == CloseCode.SLOW_CONSUMER


# -- ordering ------------------------------------------------------------------


def test_early_sends_go_out_first_then_room_traffic_queued_before_the_accept(
    clock: Clock,
) -> None:
    session = make()
    session.send(Send.of_text("early-1"), clock())
    session.offer(Send.of_text("room-1"), clock())
    session.send(Send.of_binary(b"early-2"), clock())
    session.offer(Send.of_utf8(b"room-2"), clock())
    assert session.next_frame() is None  # nothing leaves before the accept

    session.accept(clock())
    session.send(Send.of_text("direct-3"), clock())
    session.offer(Send.of_text("room-3"), clock())

    out = drain(session)
    assert texts(out) == ["early-1", b"early-2", "room-1", b"room-2", "direct-3", "room-3"]
    binary = [item.payload for item in out if isinstance(item, Send) and not item.text]
    assert binary == [b"early-2"]


def test_a_graceful_close_goes_after_queued_frames_and_ends_the_stream(clock: Clock) -> None:
    session = opened(clock)
    session.send(Send.of_text("a"), clock())
    session.offer(Send.of_text("b"), clock())

    session.close(4100, "bye")
    session.close(4200, "second")

    assert not session.offer(Send.of_text("after"), clock())
    assert session.state is State.CLOSING and not session.output_ended
    assert texts(drain(session)) == ["a", "b", (4100, "bye")]
    assert session.state is State.CLOSED and session.output_ended
    assert session.close_code == 4100


def test_a_close_decided_while_the_accept_was_under_way_still_sends_a_close_frame(
    clock: Clock,
) -> None:
    session = make()
    session.close(4100, "changed my mind")
    session.accept(clock())  # the socket is open now
    assert texts(drain(session)) == [(4100, "changed my mind")]


def test_finished_drops_what_is_left(clock: Clock) -> None:
    session = opened(clock)
    session.offer(Send.of_text("a"), clock())
    session.finished()
    assert session.state is State.CLOSED and drain(session) == []


# -- helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("", 0), ("abc", 3), ("é", 2), ("€", 3), ("🙂", 4), ("a\ud800", 4)],
    ids=["empty", "ascii", "2-byte", "3-byte", "4-byte", "lone-surrogate"],
)
def test_utf8_size_counts_encoded_bytes(text: str, size: int) -> None:
    assert utf8_size(text) == size


def test_close_reasons_are_cut_to_123_bytes_on_a_character_boundary() -> None:
    assert truncate_reason(None) is None
    assert truncate_reason("é" * 70) == "é" * 61
    session = Session(QueueLimits())
    session.abort(4100, "x" * 200)
    assert session.actions() == [Close(4100, "x" * 123)]


def test_queue_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        QueueLimits(max_messages=0)
    with pytest.raises(ValueError, match="positive"):
        QueueLimits(max_bytes=0)


def test_an_idle_session_holds_no_queue_and_one_drained_lets_it_go(clock: Clock) -> None:
    session = make()
    assert session.send(Send.of_text("early"), clock()) is Admission.QUEUED
    assert session.offer(Send.of_text("room"), clock())
    session.accept(clock())
    assert session.backlog == 2
    assert [f.as_text() for f in session.next_sends(1 << 20)] == ["early", "room"]
    # Emptied: the containers go, and the session takes frames as before.
    assert (session._queue, session._early, session._actions) == (None, None, None)
    assert session.may_write_now() and session.backlog == 0 and session.queued_bytes == 0
    assert session.offer(Send.of_text("a"), clock()) and session.offer(Send.of_text("b"), clock())
    session.close(CloseCode.NORMAL)
    assert drain(session) == [Send.of_text("a"), Send.of_text("b"), Close(CloseCode.NORMAL, None)]
    assert session._queue is None and session.actions() == []
