"""The session's limits: message budget, flooding, deadlines. Timestamps in, no sleeps."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falcon_pachinko import CloseCode, WebSocketResource, handles_message
from falcon_pachinko.session import (
    Close,
    Dispatch,
    Drop,
    Outbound,
    QueueLimits,
    RateLimit,
    RateLimited,
    Send,
    Session,
    State,
    Unhandled,
)

T0 = 1000.0
FRAME = '{"type": "say"}'
EPSILON = 1e-9


class Chat(WebSocketResource):
    @handles_message("say")
    async def say(self, ws: Any, payload: Any) -> None: ...


def opened(rate_per_s: float = 1.0, burst: int = 3, now: float = T0) -> Session:
    session = Session(
        QueueLimits(), Chat._pachinko_handlers, rate=RateLimit(rate_per_s=rate_per_s, burst=burst)
    )
    session.accept(now)
    return session


def drain(session: Session) -> list[Outbound]:
    out: list[Outbound] = []
    while (item := session.next_frame()) is not None:
        out.append(item)
    return out


def closes(session: Session) -> list[Close]:
    return [item for item in drain(session) if isinstance(item, Close)]


# -- the message budget -------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "last"),
    [
        pytest.param(3, Dispatch, id="burst-dispatched"),
        pytest.param(4, RateLimited, id="burst-plus-one-rate-limited"),
    ],
)
def test_frames_beyond_the_burst_are_not_dispatched(frames: int, last: type) -> None:
    session = opened(burst=3)
    decisions = [session.receive(FRAME, T0) for _ in range(frames)]
    assert all(isinstance(d, Dispatch) for d in decisions[:-1])
    assert isinstance(decisions[-1], last)
    assert not session.closed


def test_a_refused_frame_is_not_even_decoded() -> None:
    session = opened(burst=1)
    assert isinstance(session.receive("not json", T0), Unhandled)
    assert session.receive("not json", T0) == RateLimited()


def test_the_budget_refills_at_the_rate() -> None:
    session = opened(rate_per_s=2, burst=1)
    assert isinstance(session.receive(FRAME, T0), Dispatch)
    assert isinstance(session.receive(FRAME, T0 + 0.25), RateLimited)
    assert isinstance(session.receive(FRAME, T0 + 0.5), Dispatch)


def test_rate_zero_or_no_rate_limits_nothing() -> None:
    for session in (opened(rate_per_s=0, burst=1), Session(QueueLimits(), Chat._pachinko_handlers)):
        session.accept(T0)
        assert all(isinstance(session.receive(FRAME, T0), Dispatch) for _ in range(5000))


# -- flooding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refused", "closing"),
    [
        pytest.param(3, False, id="burst-refusals-tolerated"),
        pytest.param(4, True, id="burst-plus-one-refusals-close-1008"),
    ],
)
def test_a_client_refused_more_than_its_burst_at_once_is_closed(
    refused: int, closing: bool
) -> None:
    session = opened(rate_per_s=1, burst=3)
    for _ in range(3):
        session.receive(FRAME, T0)  # the budget
    decisions = [session.receive(FRAME, T0) for _ in range(refused)]
    assert decisions[:-1] == [RateLimited()] * (refused - 1)
    assert decisions[-1] == RateLimited(closing=closing)
    assert session.closed is closing
    if closing:
        assert session.close_code == CloseCode.POLICY_VIOLATION
        assert closes(session) == [Close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")]
        assert session.receive(FRAME, T0) == Drop()


def test_the_close_goes_out_after_the_errors_already_queued() -> None:
    session = opened(rate_per_s=1, burst=1)
    session.receive(FRAME, T0)
    session.receive(FRAME, T0)
    session.send(Send.of_text("rate limited"), T0)
    assert session.receive(FRAME, T0) == RateLimited(closing=True)
    assert session.actions() == []  # not an abort: nothing queued is dropped
    out = drain(session)
    assert [type(item) for item in out] == [Send, Close]


def test_sending_at_twice_the_rate_is_tolerated_forever() -> None:
    # rate 10/s, burst 5; a client sending 20/s gets half through, half refused.
    session = opened(rate_per_s=10, burst=5)
    now = T0
    kinds: list[type] = []
    for _ in range(2000):  # 100 s
        now += 0.05
        kinds.append(type(session.receive(FRAME, now)))
    assert not session.closed
    assert kinds.count(RateLimited) > 900


def test_sending_well_above_twice_the_rate_is_closed() -> None:
    session = opened(rate_per_s=10, burst=5)
    now = T0
    for _ in range(200):  # 30/s
        now += 1 / 30
        if isinstance(session.receive(FRAME, now), Drop):
            break
    assert session.close_code == CloseCode.POLICY_VIOLATION


# -- deadlines ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "closed"),
    [
        pytest.param(T0 + 9.999, False, id="before-the-deadline-open"),
        pytest.param(T0 + 10, True, id="at-the-deadline-closed"),
    ],
)
def test_tick_at_the_deadline_closes_with_its_code(at: float, closed: bool) -> None:
    session = opened()
    session.close_at(T0 + 10, CloseCode.CREDENTIALS_EXPIRED, "token expired")
    assert session.deadline == T0 + 10
    decided = session.tick(at)
    assert session.closed is closed
    if closed:
        assert decided == Close(CloseCode.CREDENTIALS_EXPIRED, "token expired")
        assert closes(session) == [decided]
        assert session.deadline is None
        assert session.tick(at + 1) is None  # once
    else:
        assert decided is None


def test_no_frame_at_or_after_the_deadline_is_dispatched() -> None:
    session = opened()
    session.close_at(T0 + 10, CloseCode.CREDENTIALS_EXPIRED)
    assert isinstance(session.receive(FRAME, T0 + 9), Dispatch)
    assert session.receive(FRAME, T0 + 10) == Drop()  # no tick came first
    assert session.close_code == CloseCode.CREDENTIALS_EXPIRED


def test_a_later_deadline_replaces_the_first_and_none_removes_it() -> None:
    session = opened()
    session.close_at(T0 + 1, CloseCode.CREDENTIALS_EXPIRED)
    session.close_at(T0 + 60, 4100, "lifetime")
    assert session.tick(T0 + 30) is None
    session.close_at(None, 4100)
    assert session.tick(T0 + 3600) is None and not session.closed


def test_a_deadline_that_passes_during_the_handshake_closes_right_after_the_accept() -> None:
    session = Session(QueueLimits())
    session.close_at(T0 - 1, CloseCode.CREDENTIALS_EXPIRED, "token expired")
    assert session.tick(T0) is None and session.state is State.HANDSHAKE
    session.send(Send.of_text("welcome"), T0)
    session.accept(T0)
    out = drain(session)
    assert [getattr(item, "payload", None) for item in out[:1]] == ["welcome"]
    assert out[1:] == [Close(CloseCode.CREDENTIALS_EXPIRED, "token expired")]


# -- the property -------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=100),
    burst=st.integers(min_value=1, max_value=30),
    gaps=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=150),
)
def test_no_window_of_length_t_dispatches_more_than_burst_plus_rate_times_t(
    rate: float, burst: int, gaps: list[float]
) -> None:
    session = opened(rate_per_s=rate, burst=burst, now=0.0)
    now = 0.0
    dispatched: list[float] = []
    for gap in gaps:
        now += gap
        if isinstance(session.receive(FRAME, now), Dispatch):
            dispatched.append(now)
    for i in range(len(dispatched)):
        for j in range(i, len(dispatched)):
            assert j - i + 1 <= burst + rate * (dispatched[j] - dispatched[i]) + EPSILON
