"""Membership, sans-I/O: the node's Reporter and the directory's Registry, fed a clock."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from falcon_pachinko import Member
from falcon_pachinko.membership import (
    Change,
    Delta,
    Goodbye,
    Heartbeat,
    Reporter,
    Snapshot,
    event_decoder,
)
from falcon_pachinko.presence import PresenceChange
from falcon_pachinko.registry import Lost, Registry, RequestSync

TTL = 10.0
BACKOFF = 1.0
GRACE = 3.0


def member(connection_id: str, presence: str | None = None) -> Member:
    return Member(connection_id=connection_id, presence=presence)


def join(room: str, conn: str, presence: str | None = None) -> Change:
    return Change(True, room, conn, presence)


def leave(room: str, conn: str, presence: str | None = None) -> Change:
    return Change(False, room, conn, presence)


def delta(node: str, seq: int, *changes: Change) -> Delta:
    return Delta(node=node, seq=seq, changes=list(changes))


def snapshot(node: str, seq: int, *members: Change) -> Snapshot:
    return Snapshot(node=node, seq=seq, members=list(members))


def registry(**kwargs: float) -> Registry:
    kwargs.setdefault("ttl_s", TTL)
    kwargs.setdefault("resync_backoff_s", BACKOFF)
    return Registry(**kwargs)


def lost_only(actions: list[object]) -> list[object]:
    """The actions that are not presence changes."""
    return [a for a in actions if not isinstance(a, PresenceChange)]


def view(reg: Registry) -> dict[str, set[Member]]:
    """Every room the registry lists, with its members."""
    return {room: set(reg.members(room)) for room in reg.rooms_by_prefix("")}


# -- Reporter ------------------------------------------------------------------


def test_reporter_numbers_each_delta_and_skips_empty_ones() -> None:
    reporter = Reporter("n1")
    assert reporter.take_delta() is None
    assert reporter.seq == 0
    reporter.record(True, "r", member("c1"))
    assert reporter.pending
    first = reporter.take_delta()
    assert first == delta("n1", 1, join("r", "c1"))
    assert not reporter.pending
    assert reporter.take_delta() is None
    reporter.record(False, "r", member("c1"))
    assert reporter.take_delta() == delta("n1", 2, leave("r", "c1"))
    assert reporter.seq == 2
    assert reporter.heartbeat() == Heartbeat(node="n1", seq=2)
    assert reporter.goodbye() == Goodbye(node="n1", seq=2)


def test_reporter_keeps_changes_in_order_within_a_batch() -> None:
    reporter = Reporter("n1")
    reporter.record(True, "r", member("c1", "alice"))
    reporter.record(True, "s", member("c2"))
    reporter.record(False, "r", member("c1", "alice"))
    reporter.record(True, "r", member("c1", "alice2"))
    out = reporter.take_delta()
    assert out is not None
    assert out.changes == [
        join("r", "c1", "alice"),
        join("s", "c2"),
        leave("r", "c1", "alice"),
        join("r", "c1", "alice2"),
    ]
    snap = reporter.snapshot()
    assert snap.seq == 1
    assert sorted(snap.members, key=lambda c: c.room) == [
        join("r", "c1", "alice2"),
        join("s", "c2"),
    ]


def test_reporter_snapshot_after_leaving_everything_is_empty() -> None:
    reporter = Reporter("n1")
    reporter.record(True, "r", member("c1"))
    reporter.record(False, "r", member("c1"))
    reporter.take_delta()
    assert reporter.snapshot() == snapshot("n1", 1)


def test_reporter_refuses_a_snapshot_while_changes_are_pending() -> None:
    reporter = Reporter("n1")
    reporter.record(True, "r", member("c1"))
    with pytest.raises(RuntimeError):
        reporter.snapshot()
    reporter.take_delta()
    assert reporter.snapshot() == snapshot("n1", 1, join("r", "c1"))


# -- Registry: deltas ----------------------------------------------------------


def test_registry_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        Registry(ttl_s=0)
    with pytest.raises(ValueError):
        Registry(ttl_s=1, resync_backoff_s=-1)


def test_first_delta_of_an_unknown_node_is_applied() -> None:
    reg = registry()
    assert reg.apply(delta("n1", 1, join("r", "c1", "alice")), now=0) == [
        PresenceChange(room="r", identity="alice", present=True, connection_id="c1")
    ]
    assert reg.applied_seq("n1") == 1
    assert view(reg) == {"r": {member("c1", "alice")}}
    assert (reg.node_count, reg.room_count, reg.connection_count) == (1, 1, 1)


def test_unknown_node_past_its_first_delta_is_asked_to_sync() -> None:
    reg = registry()
    assert reg.apply(delta("n1", 3, join("r", "c1")), now=0) == [RequestSync("n1")]
    assert reg.applied_seq("n1") is None
    assert view(reg) == {}


def test_gap_asks_for_a_snapshot_and_ignores_deltas_until_it_arrives() -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "c1")), now=0)
    assert reg.apply(delta("n1", 3, join("r", "c3")), now=1) == [RequestSync("n1")]
    assert reg.applied_seq("n1") is None
    # Later deltas are ignored (and do not re-request within the backoff).
    assert reg.apply(delta("n1", 4, join("r", "c4")), now=1.1) == []
    assert view(reg) == {"r": {member("c1")}}
    # The snapshot is the truth as of seq 4; deltas continue from there.
    reg.apply(snapshot("n1", 4, join("r", "c3"), join("r", "c4")), now=1.2)
    assert reg.applied_seq("n1") == 4
    assert view(reg) == {"r": {member("c3"), member("c4")}}
    assert reg.apply(delta("n1", 5, leave("r", "c3")), now=1.3) == []
    assert view(reg) == {"r": {member("c4")}}


@pytest.mark.parametrize("seq", [pytest.param(1, id="older"), pytest.param(2, id="duplicate")])
def test_stale_and_duplicate_deltas_are_ignored(seq: int) -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "c1")), now=0)
    reg.apply(delta("n1", 2, join("r", "c2")), now=0)
    assert reg.apply(delta("n1", seq, leave("r", "c1"), leave("r", "c2")), now=0) == []
    assert reg.applied_seq("n1") == 2
    assert view(reg) == {"r": {member("c1"), member("c2")}}


def test_leave_of_an_unknown_member_changes_nothing() -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "c1")), now=0)
    reg.apply(delta("n2", 1, leave("r", "c1"), leave("s", "c9")), now=0)
    assert view(reg) == {"r": {member("c1")}}


# -- Registry: snapshots and heartbeats ----------------------------------------


def test_snapshot_replaces_only_that_nodes_members() -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "a1"), join("s", "a2")), now=0)
    reg.apply(delta("n2", 1, join("r", "b1")), now=0)
    reg.apply(snapshot("n1", 1, join("t", "a3", "carol")), now=1)
    assert view(reg) == {"r": {member("b1")}, "t": {member("a3", "carol")}}
    assert reg.connection_count == 2


def test_snapshot_of_an_unknown_node_is_applied() -> None:
    reg = registry()
    reg.apply(snapshot("n1", 7, join("r", "c1")), now=0)
    assert reg.applied_seq("n1") == 7
    assert reg.apply(delta("n1", 8, join("r", "c2")), now=0) == []
    assert view(reg) == {"r": {member("c1"), member("c2")}}


def test_older_snapshot_is_ignored() -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "c1")), now=0)
    reg.apply(delta("n1", 2, join("r", "c2")), now=0)
    assert reg.apply(snapshot("n1", 1, join("r", "c1")), now=0) == []
    assert reg.applied_seq("n1") == 2
    assert view(reg) == {"r": {member("c1"), member("c2")}}


def test_heartbeat_of_an_unknown_fresh_node_needs_no_sync() -> None:
    reg = registry()
    assert reg.apply(Heartbeat(node="n1", seq=0), now=0) == []
    assert reg.applied_seq("n1") == 0
    assert reg.apply(delta("n1", 1, join("r", "c1")), now=0) == []
    assert view(reg) == {"r": {member("c1")}}


def test_heartbeat_of_an_unknown_node_with_history_asks_for_sync() -> None:
    reg = registry()
    assert reg.apply(Heartbeat(node="n1", seq=4), now=0) == [RequestSync("n1")]


def test_heartbeat_ahead_of_the_applied_seq_asks_for_sync() -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "c1")), now=0)
    assert reg.apply(Heartbeat(node="n1", seq=1), now=1) == []
    assert reg.apply(Heartbeat(node="n1", seq=2), now=2) == [RequestSync("n1")]
    assert reg.applied_seq("n1") is None
    reg.apply(snapshot("n1", 2, join("r", "c1"), join("r", "c2")), now=2.1)
    assert reg.applied_seq("n1") == 2
    assert reg.apply(Heartbeat(node="n1", seq=2), now=3) == []


@pytest.mark.parametrize(
    ("elapsed", "asks_again"),
    [
        pytest.param(BACKOFF - 1e-6, False, id="within-backoff"),
        pytest.param(BACKOFF, True, id="at-backoff"),
    ],
)
def test_sync_requests_back_off(elapsed: float, asks_again: bool) -> None:
    reg = registry()
    assert reg.apply(Heartbeat(node="n1", seq=5), now=100) == [RequestSync("n1")]
    # The snapshot was lost: every later event would ask again, but not too often.
    assert reg.apply(delta("n1", 6), now=100 + elapsed / 2) == []
    expected = [RequestSync("n1")] if asks_again else []
    assert reg.apply(Heartbeat(node="n1", seq=6), now=100 + elapsed) == expected


def test_a_snapshot_resets_the_backoff() -> None:
    reg = registry()
    assert reg.apply(Heartbeat(node="n1", seq=5), now=0) == [RequestSync("n1")]
    reg.apply(snapshot("n1", 5), now=0.1)
    assert reg.apply(delta("n1", 7), now=0.2) == [RequestSync("n1")]


# -- Registry: expiry and goodbye ----------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "expired"),
    [pytest.param(TTL - 1e-6, False, id="ttl-minus-eps"), pytest.param(TTL, True, id="ttl")],
)
def test_node_expires_at_exactly_its_ttl(elapsed: float, expired: bool) -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "a1", "alice"), join("s", "a2")), now=0)
    reg.apply(delta("n2", 1, join("r", "b1", "bob")), now=0)
    reg.apply(Heartbeat(node="n2", seq=1), now=elapsed)  # n2 stays alive
    lost = lost_only(reg.expire(now=elapsed))
    if not expired:
        assert lost == []
        assert reg.node_count == 2
        return
    assert sorted(lost, key=lambda x: x.room) == [
        Lost("r", member("a1", "alice"), "n1", expired=True),
        Lost("s", member("a2"), "n1", expired=True),
    ]
    assert reg.node_count == 1
    assert view(reg) == {"r": {member("b1", "bob")}}
    assert reg.expire(now=elapsed) == []


def test_an_expired_node_that_comes_back_is_asked_to_sync() -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "c1")), now=0)
    reg.expire(now=TTL)
    assert reg.apply(Heartbeat(node="n1", seq=1), now=TTL + 1) == [RequestSync("n1")]
    reg.apply(snapshot("n1", 1, join("r", "c1")), now=TTL + 1)
    assert view(reg) == {"r": {member("c1")}}


def test_goodbye_reports_the_remaining_members_lost() -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "a1"), join("r", "a2"), join("s", "a1")), now=0)
    reg.apply(delta("n1", 2, leave("r", "a2")), now=0)
    reg.apply(delta("n2", 1, join("r", "b1")), now=0)
    lost = reg.apply(Goodbye(node="n1", seq=2), now=1)
    assert sorted(lost, key=lambda x: x.room) == [  # type: ignore[union-attr]
        Lost("r", member("a1"), "n1"),
        Lost("s", member("a1"), "n1"),
    ]
    assert view(reg) == {"r": {member("b1")}}
    assert reg.node_count == 1
    assert reg.apply(Goodbye(node="n1", seq=2), now=1) == []  # already gone


def test_goodbye_after_leaving_everything_reports_nobody() -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "a1"), leave("r", "a1")), now=0)
    assert reg.apply(Goodbye(node="n1", seq=1), now=1) == []
    assert reg.node_count == 0


# -- Registry: queries ---------------------------------------------------------


def test_rooms_without_members_are_never_listed() -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "c1"), join("s", "c1")), now=0)
    reg.apply(delta("n1", 2, leave("r", "c1")), now=0)
    assert reg.rooms_by_prefix("") == ["s"]
    assert reg.members("r") == []
    reg.apply(snapshot("n1", 2), now=0)
    assert reg.rooms_by_prefix("") == []
    assert reg.room_count == 0


def test_rooms_by_prefix_is_sorted_and_filtered() -> None:
    reg = registry()
    rooms = ["chat_b", "chat_a", "other", "chat_", "Chat_c", "chat_aa"]
    reg.apply(delta("n1", 1, *(join(r, f"c{i}") for i, r in enumerate(rooms))), now=0)
    assert reg.rooms_by_prefix("chat_") == ["chat_", "chat_a", "chat_aa", "chat_b"]
    assert reg.rooms_by_prefix("") == sorted(rooms)
    assert reg.rooms_by_prefix("nope") == []


def test_members_and_presence_count_span_nodes() -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "a1", "alice"), join("r", "a2", "alice")), now=0)
    reg.apply(delta("n2", 1, join("r", "b1", "alice"), join("r", "b2"), join("s", "b3")), now=0)
    assert reg.presence_count("r", "alice") == 3
    assert reg.presence_count("r", None) == 1
    assert reg.presence_count("r", "bob") == 0
    assert reg.presence_count("nope", "alice") == 0
    assert set(reg.members("r")) == {
        member("a1", "alice"),
        member("a2", "alice"),
        member("b1", "alice"),
        member("b2"),
    }


def test_resync_all_asks_every_node_and_waits_for_their_snapshots() -> None:
    reg = registry()
    reg.apply(delta("n1", 1, join("r", "a1")), now=0)
    reg.apply(Heartbeat(node="n2", seq=0), now=0)
    assert sorted(reg.resync_all(now=5), key=lambda r: r.node) == [
        RequestSync("n1"),
        RequestSync("n2"),
    ]
    assert reg.applied_seq("n1") is None and reg.applied_seq("n2") is None
    # Requests were just sent: no repeats within the backoff, deltas wait.
    assert reg.apply(delta("n1", 2, join("r", "a2")), now=5.1) == []
    assert view(reg) == {"r": {member("a1")}}
    reg.apply(snapshot("n1", 2, join("r", "a2")), now=5.2)
    assert view(reg) == {"r": {member("a2")}}
    assert reg.applied_seq("n1") == 2
    assert reg.apply(Heartbeat(node="n2", seq=0), now=6.5) == [RequestSync("n2")]


def test_resync_all_of_an_empty_registry_asks_nobody() -> None:
    assert registry().resync_all(now=0) == []


# -- wire decoding -------------------------------------------------------------

_EVENT_TYPES = (Delta, Snapshot, Heartbeat, Goodbye)


def _decode_or_documented_error(data: bytes) -> None:
    try:
        event = event_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return
    assert isinstance(event, _EVENT_TYPES)


@given(st.binary(max_size=512))
def test_event_decoder_on_arbitrary_bytes(data: bytes) -> None:
    _decode_or_documented_error(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
near_events = st.fixed_dictionaries(
    {"kind": st.sampled_from(["delta", "snapshot", "heartbeat", "goodbye", "nope"])},
    optional={
        "node": json_values,
        "seq": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
        "changes": st.lists(json_values, max_size=3),
        "members": st.lists(st.tuples(st.booleans(), st.text(), st.text()), max_size=3),
    },
)


@given(st.one_of(json_values, near_events))
def test_event_decoder_on_arbitrary_json(value: object) -> None:
    _decode_or_documented_error(msgspec.json.encode(value))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"[" * 100_000, id="deep-array"),
        pytest.param(b'{"kind":"delta",' * 10_000, id="repeated-prefix"),
        pytest.param(b'{"kind":"heartbeat","node":"n","seq":' + b"9" * 5000 + b"}", id="huge-int"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(b"", id="empty"),
    ],
)
def test_event_decoder_on_hostile_input(data: bytes) -> None:
    _decode_or_documented_error(data)


changes = st.builds(Change, st.booleans(), st.text(), st.text(), st.none() | st.text())
events = st.one_of(
    st.builds(Delta, node=st.text(), seq=st.integers(0, 2**63 - 1), changes=st.lists(changes)),
    st.builds(Snapshot, node=st.text(), seq=st.integers(0, 2**63 - 1), members=st.lists(changes)),
    st.builds(Heartbeat, node=st.text(), seq=st.integers(0, 2**63 - 1)),
    st.builds(Goodbye, node=st.text(), seq=st.integers(0, 2**63 - 1)),
)


@given(events)
def test_events_round_trip(event: Delta | Snapshot | Heartbeat | Goodbye) -> None:
    assert event_decoder.decode(msgspec.json.encode(event)) == event


# -- convergence: any delivery order the transport allows ----------------------

NODES = ("n0", "n1", "n2")
ROOMS = ("r0", "r1", "r2")
PRESENCES = (None, "alice", "bob")


class Cluster(RuleBasedStateMachine):
    """Nodes change membership; their events reach one registry in order, some lost.

    The transport is NATS core: one node's events arrive in the order sent, and any
    of them may be lost (a disconnect). Sync requests are answered the way the NATS
    backend does: pending delta first, then a snapshot. After the nodes heartbeat
    and the requested snapshots arrive, the registry equals the nodes' truth.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.registry = Registry(ttl_s=1e9, resync_backoff_s=BACKOFF, grace_s=GRACE)
        self.incarnation = dict.fromkeys(NODES, 0)
        self.reporters = {n: Reporter(self._node_id(n)) for n in NODES}
        self.truth: dict[str, dict[tuple[str, str], Member]] = {n: {} for n in NODES}
        self.sync_requested: set[str] = set()
        #: (room, identity) pairs announced present and not announced gone since.
        self.announced: set[tuple[str, str]] = set()

    def _node_id(self, node: str) -> str:
        return f"{node}.{self.incarnation[node]}"

    def _deliver(self, event: Delta | Snapshot | Heartbeat | Goodbye) -> list[Lost]:
        lost: list[Lost] = []
        for action in self.registry.apply(event, self.now):
            if isinstance(action, RequestSync):
                self.sync_requested.add(action.node)
            elif isinstance(action, PresenceChange):
                self._announce(action)
            else:
                lost.append(action)
        return lost

    def _announce(self, change: PresenceChange) -> None:
        # Exactly once per transition: never "joined" twice, never "left" unannounced.
        key = (change.room, change.identity)
        if change.present:
            assert key not in self.announced, f"{key} announced present twice"
            self.announced.add(key)
        else:
            assert key in self.announced, f"{key} announced gone without being present"
            self.announced.discard(key)

    def _registry_members_of(self, node_id: str) -> set[tuple[str, Member]]:
        return {
            (room, m)
            for room in self.registry.rooms_by_prefix("")
            for m in self.registry.members(room)
            if m.connection_id.startswith(node_id + "/")
        }

    @rule(
        node=st.sampled_from(NODES),
        room=st.sampled_from(ROOMS),
        slot=st.integers(0, 3),
        presence=st.sampled_from(PRESENCES),
    )
    def toggle_membership(self, node: str, room: str, slot: int, presence: str | None) -> None:
        conn = f"{self._node_id(node)}/c{slot}"
        key = (room, conn)
        truth = self.truth[node]
        if key in truth:
            self.reporters[node].record(False, room, truth.pop(key))
        else:
            truth[key] = member(conn, presence)
            self.reporters[node].record(True, room, truth[key])

    @rule(node=st.sampled_from(NODES), lost=st.booleans())
    def send_delta(self, node: str, lost: bool) -> None:
        out = self.reporters[node].take_delta()
        if out is not None and not lost:
            assert self._deliver(out) == []

    @rule(node=st.sampled_from(NODES), lost=st.booleans())
    def heartbeat(self, node: str, lost: bool) -> None:
        if not lost:
            assert self._deliver(self.reporters[node].heartbeat()) == []

    @rule(seconds=st.floats(0.0, 2 * BACKOFF))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        for action in self.registry.expire(self.now):
            assert isinstance(action, PresenceChange)  # only held users expire here
            self._announce(action)

    @precondition(lambda self: bool(self.sync_requested))
    @rule(data=st.data(), delta_lost=st.booleans(), snapshot_lost=st.booleans())
    def answer_sync(self, data: st.DataObject, delta_lost: bool, snapshot_lost: bool) -> None:
        node_id = data.draw(st.sampled_from(sorted(self.sync_requested)))
        self.sync_requested.discard(node_id)
        node = node_id.split(".")[0]
        if self._node_id(node) != node_id:
            return  # that incarnation is gone
        self._answer(node, delta_lost=delta_lost, snapshot_lost=snapshot_lost)

    @rule(node=st.sampled_from(NODES), hold=st.booleans())
    def restart_with_goodbye(self, node: str, hold: bool) -> None:
        node_id = self._node_id(node)
        reporter = self.reporters[node]
        out = reporter.take_delta()
        if out is not None:
            self._deliver(out)
        before = self._registry_members_of(node_id)
        lost = self._deliver(reporter.goodbye(hold=hold))
        assert {(x.room, x.member) for x in lost} == before
        assert all(x.node == node_id for x in lost)
        assert self._registry_members_of(node_id) == set()
        self.incarnation[node] += 1
        self.reporters[node] = Reporter(self._node_id(node))
        self.truth[node] = {}

    def _answer(self, node: str, *, delta_lost: bool = False, snapshot_lost: bool = False) -> None:
        reporter = self.reporters[node]
        out = reporter.take_delta()
        if out is not None and not delta_lost:
            self._deliver(out)
        snap = reporter.snapshot()
        if not snapshot_lost:
            self._deliver(snap)

    @invariant()
    def listed_rooms_have_members(self) -> None:
        for room in self.registry.rooms_by_prefix(""):
            assert self.registry.members(room)

    @invariant()
    def an_up_to_date_node_is_seen_exactly(self) -> None:
        for node in NODES:
            node_id = self._node_id(node)
            reporter = self.reporters[node]
            if not reporter.pending and self.registry.applied_seq(node_id) == reporter.seq:
                expected = {(room, m) for (room, _), m in self.truth[node].items()}
                assert self._registry_members_of(node_id) == expected

    def teardown(self) -> None:
        # Quiesce the way a live cluster does: pending deltas and heartbeats go out,
        # every sync request (subject to its backoff) is answered.
        for _ in range(3):
            self.now += BACKOFF
            for node in NODES:
                out = self.reporters[node].take_delta()
                if out is not None:
                    self._deliver(out)
                self._deliver(self.reporters[node].heartbeat())
            while self.sync_requested:
                node_id = self.sync_requested.pop()
                node = node_id.split(".")[0]
                if self._node_id(node) == node_id:
                    self._answer(node)
        expected: dict[str, set[Member]] = {}
        for node in NODES:
            for (room, _), m in self.truth[node].items():
                expected.setdefault(room, set()).add(m)
            assert self.registry.applied_seq(self._node_id(node)) == self.reporters[node].seq
        assert view(self.registry) == expected
        assert self.registry.connection_count == sum(len(t) for t in self.truth.values())
        # Once every held user's grace is over, what was announced is the truth.
        self.now += GRACE
        for action in self.registry.expire(self.now):
            assert isinstance(action, PresenceChange)
            self._announce(action)
        present = {
            (room, m.presence)
            for node in NODES
            for (room, _), m in self.truth[node].items()
            if m.presence is not None
        }
        assert self.announced == present
        for room, identity in present:
            assert identity in self.registry.identities(room)


Cluster.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_registry_converges_to_the_nodes_truth = Cluster.TestCase


# -- multi-part snapshots --------------------------------------------------------


def _big_reporter(members: int) -> Reporter:
    reporter = Reporter("big")
    for i in range(members):
        reporter.record(True, f"room-{i % 7}", Member(connection_id=f"c{i:05d}", presence=f"u{i}"))
    reporter.take_delta()
    return reporter


def test_large_snapshots_are_split_into_parts_under_the_size_budget() -> None:
    reporter = _big_reporter(3000)
    parts = reporter.snapshot_parts(max_bytes=16 * 1024)
    assert len(parts) > 1
    assert [p.part for p in parts] == list(range(len(parts)))
    assert [p.final for p in parts] == [False] * (len(parts) - 1) + [True]
    assert all(len(msgspec.json.encode(p)) <= 16 * 1024 + 512 for p in parts)
    assert sum(len(p.members) for p in parts) == 3000
    assert reporter.snapshot_parts() == [reporter.snapshot()]  # small enough for one part


def test_registry_applies_parts_in_order_and_is_synced_after_the_final_one() -> None:
    registry = Registry(ttl_s=10)
    parts = _big_reporter(500).snapshot_parts(max_bytes=4 * 1024)
    for part in parts[:-1]:
        assert lost_only(registry.apply(part, 1.0)) == []
        assert registry.applied_seq("big") is None  # not yet complete
    registry.apply(parts[-1], 1.0)
    assert registry.applied_seq("big") == 1
    assert registry.connection_count == 500


def test_a_missing_part_restarts_the_sync() -> None:
    registry = Registry(ttl_s=10)
    parts = _big_reporter(500).snapshot_parts(max_bytes=4 * 1024)
    registry.apply(parts[0], 1.0)
    assert registry.apply(parts[2], 1.0) == [RequestSync("big")]
    assert registry.applied_seq("big") is None
    for part in parts:  # the requested snapshot arrives whole
        registry.apply(part, 3.0)
    assert registry.applied_seq("big") == 1 and registry.connection_count == 500


def test_parts_of_a_stale_snapshot_do_not_unsync_a_node() -> None:
    registry = Registry(ttl_s=10)
    reporter = _big_reporter(200)
    stale = reporter.snapshot_parts(max_bytes=2 * 1024)
    reporter.record(True, "extra", Member(connection_id="late"))
    delta = reporter.take_delta()
    assert delta is not None
    for part in reporter.snapshot_parts():
        registry.apply(part, 1.0)
    assert registry.applied_seq("big") == 2
    for part in stale:  # an older snapshot, delivered late
        assert registry.apply(part, 1.5) == []
    assert registry.applied_seq("big") == 2
    assert registry.connection_count == 201
