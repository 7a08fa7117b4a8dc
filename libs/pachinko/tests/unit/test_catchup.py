"""CatchUp, sans-I/O: history and live traffic merged into exactly once, in order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falcon_pachinko.catchup import CatchUp, Phase


def test_live_messages_wait_for_the_history_then_follow_it() -> None:
    catchup: CatchUp[str] = CatchUp(after=10)
    assert catchup.live(14, "m14") == []  # held while the history is read
    assert catchup.history([(11, "m11"), (14, "m14")]) == ["m11", "m14"]
    assert catchup.live(15, "m15") == []
    assert catchup.finish() == ["m15"]  # m14 came in the history already
    assert catchup.phase is Phase.LIVE
    assert catchup.live(17, "m17") == ["m17"]
    assert catchup.live(17, "m17") == []  # a redelivery
    assert catchup.last == 17


def test_a_first_join_starts_where_the_history_starts() -> None:
    catchup: CatchUp[str] = CatchUp(after=None)
    assert catchup.live(9, "m9") == []
    assert catchup.history([(5, "m5"), (7, "m7")]) == ["m5", "m7"]
    assert catchup.finish() == ["m9"]


def test_nothing_stored_means_straight_to_live() -> None:
    catchup: CatchUp[str] = CatchUp(after=3)
    assert catchup.history([]) == []
    assert catchup.finish() == []
    assert catchup.live(4, "m4") == ["m4"]


@pytest.mark.parametrize(
    ("arrivals", "phase"),
    [
        pytest.param(2, Phase.READING, id="max-held-waits"),
        pytest.param(3, Phase.OVERFLOWED, id="max+1-overflows"),
    ],
)
def test_holding_is_bounded(arrivals: int, phase: Phase) -> None:
    catchup: CatchUp[int] = CatchUp(after=0, max_held=2)
    for seq in range(1, arrivals + 1):
        assert catchup.live(seq, seq) == []
    assert catchup.phase is phase
    if phase is Phase.OVERFLOWED:
        # Nothing more goes out: the adapter ends the connection and the client resumes.
        assert catchup.history([(1, 1)]) == []
        assert catchup.finish() == []
        assert catchup.live(9, 9) == []


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[int], int, list[tuple[str, object]]]:
    """A room's positions, a cursor, and one connection's events in arrival order.

    The adapter subscribes at index ``s`` of the publications, then reads the
    history in pages; each page sees what was stored by the time it is read.
    Live deliveries arrive in publication order, each after its publication,
    sometimes twice.
    """
    gaps = draw(st.lists(st.integers(1, 3), min_size=0, max_size=25))
    positions = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    cursor = draw(st.sampled_from([0, *positions]))
    subscribed_at = draw(st.integers(0, len(positions)))
    page_size = draw(st.integers(1, 5))
    actions = draw(st.lists(st.sampled_from(["publish", "deliver", "page"]), max_size=60))
    events: list[tuple[str, object]] = []
    published = subscribed_at  # publications so far
    sent_live = subscribed_at  # live deliveries so far (in order)
    read_up_to = cursor  # the history's position so far
    redeliver = draw(st.booleans())

    def page() -> bool:
        nonlocal read_up_to
        stored = [p for p in positions[:published] if p > read_up_to][:page_size]
        events.append(("page", stored))
        if stored:
            read_up_to = stored[-1]
        return len(stored) < page_size  # a short page: the history is read

    done = False
    for action in actions:
        if action == "publish" and published < len(positions):
            published += 1
        elif action == "deliver" and sent_live < published:
            events.append(("live", positions[sent_live]))
            if redeliver:
                events.append(("live", positions[sent_live]))
            sent_live += 1
        elif action == "page" and page():
            done = True
            break
    while not done:
        done = page()
    events.append(("finish", None))
    published = len(positions)  # the rest of the conversation
    events.extend(("live", p) for p in positions[sent_live:published])
    return positions, cursor, events


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_every_message_after_the_cursor_exactly_once_in_order(
    scenario: tuple[list[int], int, list[tuple[str, object]]],
) -> None:
    positions, cursor, events = scenario
    catchup: CatchUp[int] = CatchUp(after=cursor, max_held=10_000)
    seen: list[int] = []
    for kind, value in events:
        if kind == "live":
            assert isinstance(value, int)
            seen += catchup.live(value, value)
        elif kind == "page":
            assert isinstance(value, list)
            seen += catchup.history((p, p) for p in value)
        else:
            seen += catchup.finish()
    assert seen == [p for p in positions if p > cursor]
