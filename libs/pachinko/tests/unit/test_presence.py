"""Presence, sans-I/O: first-in/last-out per (room, identity), holds, and the registry's rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falcon_pachinko.membership import Change, Delta, Goodbye, Heartbeat, Snapshot
from falcon_pachinko.presence import PresenceChange, PresenceTracker
from falcon_pachinko.registry import Registry


def arrived(room: str, who: str, conn: str) -> PresenceChange:
    return PresenceChange(room=room, identity=who, present=True, connection_id=conn)


def left(room: str, who: str, conn: str) -> PresenceChange:
    return PresenceChange(room=room, identity=who, present=False, connection_id=conn)


# -- the tracker -------------------------------------------------------------------


def test_first_connection_arrives_and_last_one_leaves() -> None:
    tracker = PresenceTracker()
    assert tracker.add("r", "alice", "c1") == arrived("r", "alice", "c1")
    assert tracker.add("r", "alice", "c2") is None  # a second tab
    assert tracker.identities("r") == ["alice"]
    assert tracker.remove("r", "alice", "c1") is None
    assert tracker.remove("r", "alice", "c2") == left("r", "alice", "c2")
    assert tracker.identities("r") == []


def test_rooms_are_independent_and_identities_sorted() -> None:
    tracker = PresenceTracker()
    tracker.add("r", "bob", "c1")
    tracker.add("r", "alice", "c2")
    assert tracker.add("s", "alice", "c3") == arrived("s", "alice", "c3")
    assert tracker.identities("r") == ["alice", "bob"]
    assert tracker.identities("s") == ["alice"]


@pytest.mark.parametrize("op", ["add", "remove"])
def test_anonymous_connections_are_never_reported(op: str) -> None:
    tracker = PresenceTracker()
    assert getattr(tracker, op)("r", None, "c1") is None
    assert tracker.identities("r") == []


def test_repeated_adds_and_removes_change_nothing() -> None:
    tracker = PresenceTracker()
    tracker.add("r", "alice", "c1")
    assert tracker.add("r", "alice", "c1") is None
    assert tracker.count("r", "alice") == 1
    assert tracker.remove("r", "alice", "c1") is not None
    assert tracker.remove("r", "alice", "c1") is None
    assert tracker.remove("r", "nobody", "c9") is None


@pytest.mark.parametrize(
    ("elapsed", "released"),
    [pytest.param(4.999, False, id="before-deadline"), pytest.param(5.0, True, id="at-deadline")],
)
def test_a_held_connection_counts_until_its_deadline(elapsed: float, released: bool) -> None:
    tracker = PresenceTracker()
    tracker.add("r", "alice", "c1")
    tracker.hold("r", "alice", "c1", until=5.0)
    assert tracker.identities("r") == ["alice"]
    assert tracker.held_count == 1
    assert tracker.next_deadline() == 5.0
    changes = tracker.expire(elapsed)
    assert changes == ([left("r", "alice", "c1")] if released else [])
    assert tracker.held_count == (0 if released else 1)


def test_a_user_back_within_the_hold_neither_leaves_nor_arrives() -> None:
    tracker = PresenceTracker()
    tracker.add("r", "alice", "old")
    tracker.hold("r", "alice", "old", until=5.0)
    assert tracker.add("r", "alice", "new") is None  # reconnected elsewhere
    assert tracker.expire(6.0) == []
    assert tracker.identities("r") == ["alice"]
    assert tracker.remove("r", "alice", "new") == left("r", "alice", "new")


def test_holding_an_unknown_connection_does_nothing() -> None:
    tracker = PresenceTracker()
    tracker.hold("r", "alice", "c1", until=1.0)
    tracker.hold("r", None, "c1", until=1.0)
    assert tracker.held_count == 0
    assert tracker.next_deadline() is None


Op = tuple[str, str, str]  # (op, identity, connection)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "remove", "hold"]),
            st.sampled_from(["alice", "bob"]),
            st.sampled_from(["c1", "c2", "c3"]),
        ),
        max_size=40,
    )
)
def test_transitions_alternate_and_match_the_count(ops: list[Op]) -> None:
    tracker = PresenceTracker()
    present: set[str] = set()
    now = 0.0
    for op, who, conn in ops:
        now += 1.0
        if op == "hold":
            tracker.hold("r", who, conn, until=now + 1.5)
            changes = []
        else:
            change = getattr(tracker, op)("r", who, conn)
            changes = [] if change is None else [change]
        changes += tracker.expire(now)
        for change in changes:
            assert change.present != (change.identity in present), change
            (present.add if change.present else present.discard)(change.identity)
        assert present == set(tracker.identities("r"))
        assert all(tracker.count("r", w) > 0 for w in present)


# -- the registry's rules ----------------------------------------------------------


def delta(node: str, seq: int, *changes: Change) -> Delta:
    return Delta(node=node, seq=seq, changes=list(changes))


def presence_of(actions: list[object]) -> list[object]:
    return [a for a in actions if isinstance(a, PresenceChange)]


def test_a_clean_leave_is_announced_at_once_across_nodes() -> None:
    reg = Registry(ttl_s=10)
    assert presence_of(reg.apply(delta("n1", 1, Change(True, "r", "a1", "alice")), 0)) == [
        arrived("r", "alice", "a1")
    ]
    assert presence_of(reg.apply(delta("n2", 1, Change(True, "r", "a2", "alice")), 0)) == []
    assert presence_of(reg.apply(delta("n1", 2, Change(False, "r", "a1", "alice")), 1)) == []
    assert presence_of(reg.apply(delta("n2", 2, Change(False, "r", "a2", "alice")), 2)) == [
        left("r", "alice", "a2")
    ]


def test_an_expired_node_leaves_its_users_unless_present_elsewhere() -> None:
    reg = Registry(ttl_s=10)
    reg.apply(delta("n1", 1, Change(True, "r", "a1", "alice"), Change(True, "r", "b1", "bob")), 0)
    reg.apply(delta("n2", 1, Change(True, "r", "a2", "alice")), 0)
    reg.apply(Delta(node="n2", seq=1, changes=[]), 9)  # n2 stays alive
    assert presence_of(reg.expire(10)) == [left("r", "bob", "b1")]
    assert reg.identities("r") == ["alice"]


def test_a_graceful_goodbye_holds_users_for_the_grace() -> None:
    reg = Registry(ttl_s=10, grace_s=5)
    reg.apply(delta("n1", 1, Change(True, "r", "m1", "mover"), Change(True, "r", "g1", "ghost")), 0)
    assert presence_of(reg.apply(Goodbye(node="n1", seq=1, hold=True), 1)) == []
    assert reg.identities("r") == ["ghost", "mover"]
    # The mover reconnects to another node within the grace; the ghost does not.
    assert presence_of(reg.apply(delta("n2", 1, Change(True, "r", "m2", "mover")), 2)) == []
    assert presence_of(reg.expire(5.9)) == []
    assert presence_of(reg.expire(6.0)) == [left("r", "ghost", "g1")]
    assert reg.identities("r") == ["mover"]


def test_an_abrupt_goodbye_leaves_at_once() -> None:
    reg = Registry(ttl_s=10, grace_s=5)
    reg.apply(delta("n1", 1, Change(True, "r", "a1", "alice")), 0)
    assert presence_of(reg.apply(Goodbye(node="n1", seq=1), 1)) == [left("r", "alice", "a1")]


def test_snapshots_rebuilding_a_restarted_directory_announce_no_arrivals() -> None:
    reg = Registry(ttl_s=10, quiet_until=5.0)
    snap = Snapshot(node="n1", seq=3, members=[Change(True, "r", "a1", "alice")])
    assert presence_of(reg.apply(snap, 1.0)) == []
    assert reg.identities("r") == ["alice"]
    # After the quiet period a snapshot of a node never seen reports its arrivals.
    late = Snapshot(node="n2", seq=1, members=[Change(True, "r", "b1", "bob")])
    assert presence_of(reg.apply(late, 6.0)) == [arrived("r", "bob", "b1")]


def test_a_resync_snapshot_reports_only_the_difference() -> None:
    reg = Registry(ttl_s=10)
    reg.apply(delta("n1", 1, Change(True, "r", "a1", "alice"), Change(True, "r", "b1", "bob")), 0)
    # Deltas 2 and 3 were lost: bob left and carol joined. The snapshot repairs it.
    snap = Snapshot(
        node="n1",
        seq=3,
        members=[Change(True, "r", "a1", "alice"), Change(True, "r", "c1", "carol")],
    )
    assert presence_of(reg.apply(snap, 1)) == [arrived("r", "carol", "c1"), left("r", "bob", "b1")]


def test_a_relabelled_connection_moves_its_presence() -> None:
    reg = Registry(ttl_s=10)
    reg.apply(delta("n1", 1, Change(True, "r", "c1", "anon")), 0)
    snap = Snapshot(node="n1", seq=2, members=[Change(True, "r", "c1", "alice")])
    assert presence_of(reg.apply(snap, 1)) == [left("r", "anon", "c1"), arrived("r", "alice", "c1")]


def test_connections_of_counts_each_connection_once_across_rooms_and_nodes() -> None:
    reg = Registry(ttl_s=10)
    reg.apply(delta("n1", 1, Change(True, "r", "a1", "alice"), Change(True, "s", "a1", "alice")), 0)
    reg.apply(delta("n2", 1, Change(True, "r", "a2", "alice"), Change(True, "r", "b1", "bob")), 0)
    assert (reg.connections_of("alice"), reg.connections_of("bob")) == (2, 1)
    reg.apply(delta("n1", 2, Change(False, "r", "a1", "alice")), 1)
    assert reg.connections_of("alice") == 2  # a1 is still in s
    reg.apply(Goodbye(node="n1", seq=2), 2)
    assert reg.connections_of("alice") == 1
    assert reg.connections_of("nobody") == 0


def test_a_heartbeat_before_the_snapshot_keeps_a_restarted_directory_quiet() -> None:
    reg = Registry(ttl_s=10, quiet_until=5.0)
    assert presence_of(reg.apply(Heartbeat(node="n1", seq=3), 1.0)) == []
    snap = Snapshot(node="n1", seq=3, members=[Change(True, "r", "a1", "alice")])
    assert presence_of(reg.apply(snap, 1.1)) == []
    assert reg.identities("r") == ["alice"]
    # A gateway that starts during the quiet period is new: its joins are announced.
    joined = reg.apply(delta("n2", 1, Change(True, "r", "b1", "bob")), 2.0)
    assert presence_of(joined) == [arrived("r", "bob", "b1")]
