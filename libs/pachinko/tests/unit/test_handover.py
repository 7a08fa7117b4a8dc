"""What a standby owes at takeover: decisions no announcement covered, netted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falcon_pachinko.handover import Handover
from falcon_pachinko.presence import PresenceChange


def change(identity: str, present: bool, room: str = "r", conn: str = "c") -> PresenceChange:
    return PresenceChange(room=room, identity=identity, present=present, connection_id=conn)


def test_a_decision_the_active_announced_is_not_owed_in_either_order() -> None:
    h = Handover(horizon_s=5)
    h.decided(change("alice", False), 1.0)
    h.announced([change("alice", False, conn="other")], 1.1)  # the active was later
    h.announced([change("bob", False)], 1.2)
    h.decided(change("bob", False), 1.3)  # the active was first
    assert h.owed == 0
    assert h.take() == []


def test_what_the_active_did_not_announce_is_owed_at_takeover() -> None:
    h = Handover(horizon_s=5)
    h.decided(change("alice", False), 1.0)
    h.decided(change("bob", True, room="s"), 1.5)
    h.announced([change("alice", False)], 1.6)
    assert h.owed == 1
    assert h.take() == [change("bob", True, room="s")]
    assert h.owed == 0 and h.take() == []


def test_a_departure_and_a_return_nobody_heard_cancel_out() -> None:
    h = Handover(horizon_s=5)
    h.decided(change("alice", False), 1.0)
    h.decided(change("alice", True), 2.0)
    h.decided(change("carol", True), 2.5)
    h.decided(change("carol", False), 2.6)
    h.decided(change("carol", True), 2.7)
    assert h.take() == [change("carol", True)]


def test_the_order_is_that_of_each_identitys_last_decision() -> None:
    h = Handover(horizon_s=5)
    h.decided(change("alice", False), 1.0)
    h.decided(change("bob", False), 2.0)
    h.decided(change("alice", True), 3.0)
    h.decided(change("alice", False), 4.0)
    assert h.take() == [change("bob", False), change("alice", False)]


def test_a_decision_the_active_lived_past_without_announcing_is_dropped() -> None:
    h = Handover(horizon_s=5)
    h.decided(change("alice", False), 1.0)
    h.decided(change("bob", False), 4.0)
    h.holder_alive(5.9)  # alive, but not 5 s past either decision
    assert h.owed == 2
    h.holder_alive(6.0)  # 5 s past alice's: the active saw it otherwise
    assert h.owed == 1
    assert h.take() == [change("bob", False)]


def test_while_the_active_is_not_seen_decisions_are_kept() -> None:
    h = Handover(horizon_s=5)
    h.decided(change("alice", False), 1.0)
    h.decided(change("bob", False), 100.0)  # no sign of life in between
    assert h.owed == 2


def test_an_announcement_nothing_matched_is_forgotten_after_the_horizon() -> None:
    h = Handover(horizon_s=5)
    h.announced([change("alice", False)], 1.0)
    h.decided(change("alice", False), 6.5)  # a later departure of its own
    assert h.take() == [change("alice", False)]


def test_the_ledger_is_bounded() -> None:
    h = Handover(horizon_s=5, limit=3)
    for i in range(5):
        h.decided(change(f"u{i}", True), float(i))
    assert h.owed == 3 and h.dropped == 2
    assert [c.identity for c in h.take()] == ["u2", "u3", "u4"]


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        Handover(horizon_s=0)
    with pytest.raises(ValueError):
        Handover(horizon_s=1, limit=0)


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 1)), max_size=40),
    st.integers(0, 40),
)
def test_announced_prefix_plus_owed_reaches_the_standbys_truth(
    steps: list[tuple[str, int]], cut: int
) -> None:
    """The active announces a prefix of the changes both replicas decide, then dies:
    a room that heard the prefix and then what the standby owes ends where the
    standby's own view is, for every identity."""
    truth: dict[str, bool] = {}
    decided: list[PresenceChange] = []
    for who, _ in steps:  # each identity toggles, as presence does
        truth[who] = not truth.get(who, False)
        decided.append(change(who, truth[who]))
    heard = decided[: min(cut, len(decided))]
    h = Handover(horizon_s=5)
    for c in decided:
        h.decided(c, 1.0)
    h.announced(heard, 1.1)
    room: dict[str, bool] = {}
    for c in heard + h.take():
        room[c.identity] = c.present
    assert {k: v for k, v in room.items() if v} == {k: v for k, v in truth.items() if v}
