"""WebSocketConnectionManager on the in-process backend, over real Connections."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falcon_pachinko import Backend, Connection, Member, WebSocketConnectionManager
from falcon_pachinko.backends import InProcessBroker, InProcessPresence
from falcon_pachinko.presence import PresenceChange
from falcon_pachinko.testing import scaled

BOUND_S = scaled(0.5)

MakeConnection = Any  # conftest.make_connection: (**limits) -> (Connection, FakeSocket)


class RecordingBackend(Backend):
    """The in-process backend, recording calls to its broker and its presence.

    ``pause`` makes every call yield first, as a networked backend would, so that
    concurrent joins and leaves interleave. Clearing ``gate`` holds ``subscribe``.
    """

    def __init__(self, *, pause: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.published: list[bytes] = []
        self.pause = pause
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        super().__init__(_RecordingBroker(self), _RecordingPresence(self))

    async def step(self, name: str, room: str) -> None:
        if self.pause:
            await asyncio.sleep(0)
        self.calls.append((name, room))

    def subscriptions(self, room: str) -> list[str]:
        return [name for name, r in self.calls if r == room and name.endswith("subscribe")]

    def subscribed(self, room: str) -> bool:
        subs = self.subscriptions(room)
        return bool(subs) and subs[-1] == "subscribe"


class _RecordingBroker(InProcessBroker):
    def __init__(self, recorder: RecordingBackend) -> None:
        super().__init__()
        self.recorder = recorder

    async def subscribe(self, room: str) -> None:
        self.recorder.entered.set()
        await self.recorder.gate.wait()
        await self.recorder.step("subscribe", room)
        await super().subscribe(room)

    async def unsubscribe(self, room: str) -> None:
        await self.recorder.step("unsubscribe", room)
        await super().unsubscribe(room)

    async def publish(self, room: str, data: bytes, *, exclude: str | None = None) -> None:
        self.recorder.published.append(data)
        await super().publish(room, data, exclude=exclude)


class _RecordingPresence(InProcessPresence):
    def __init__(self, recorder: RecordingBackend) -> None:
        super().__init__()
        self.recorder = recorder

    async def member_joined(self, room: str, member: Member) -> None:
        await self.recorder.step("member_joined", room)
        await super().member_joined(room, member)

    async def member_left(self, room: str, member: Member) -> None:
        await self.recorder.step("member_left", room)
        await super().member_left(room, member)


class Hub:
    """A started manager over a recording backend, and a way to add clients."""

    def __init__(self, make_connection: MakeConnection, backend: RecordingBackend) -> None:
        self.backend = backend
        self.manager = WebSocketConnectionManager(backend)
        self._make = make_connection

    async def connect(self, presence: str | None = None, **limits: Any) -> tuple[Connection, Any]:
        conn, sock = self._make(**limits)
        self.manager.register(conn, presence)
        await conn.accept()
        return conn, sock


@pytest.fixture
async def make_hub(make_connection: MakeConnection) -> AsyncIterator[Any]:
    """``hub = await make_hub(pause=False)``; every hub is stopped when the test ends."""
    hubs: list[Hub] = []

    async def make(*, pause: bool = False) -> Hub:
        hub = Hub(make_connection, RecordingBackend(pause=pause))
        await hub.manager.start()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        async with asyncio.timeout(BOUND_S):
            await hub.manager.stop()


async def broadcast_marker(hub: Hub, room: str, socks: list[Any]) -> None:
    """Broadcast a marker and wait until every socket has it: all before it arrived."""
    await hub.manager.broadcast_to_room(room, "marker")
    for sock in socks:
        await sock.wait_for(lambda s=sock: "marker" in s.frames)


# -- subscriptions --------------------------------------------------------------


async def test_one_subscription_per_room_however_many_members(make_hub: Any) -> None:
    hub = await make_hub()
    conns = [(await hub.connect())[0] for _ in range(3)]

    for conn in conns:
        await hub.manager.join_room(conn, "lobby")
    assert hub.backend.subscriptions("lobby") == ["subscribe"]

    for conn in conns[:-1]:
        await hub.manager.leave_room(conn, "lobby")
    assert hub.backend.subscriptions("lobby") == ["subscribe"]

    await hub.manager.leave_room(conns[-1], "lobby")
    assert hub.backend.subscriptions("lobby") == ["subscribe", "unsubscribe"]


async def test_a_room_without_members_is_listed_nowhere(make_hub: Any) -> None:
    hub = await make_hub()
    conn, _ = await hub.connect()
    await hub.manager.join_room(conn, "lobby")
    assert await hub.manager.get_rooms_by_prefix("") == ["lobby"]
    assert hub.manager.local_rooms() == ["lobby"]

    await hub.manager.leave_room(conn, "lobby")

    assert await hub.manager.get_rooms_by_prefix("") == []
    assert await hub.manager.get_rooms_by_prefix("lob") == []
    assert hub.manager.local_rooms() == []
    assert await hub.manager.room_members("lobby") == []


async def test_get_rooms_by_prefix_filters_and_sorts(make_hub: Any) -> None:
    hub = await make_hub()
    conn, _ = await hub.connect()
    for room in ["gamma", "alpine", "beta", "alpha"]:
        await hub.manager.join_room(conn, room)

    assert await hub.manager.get_rooms_by_prefix("al") == ["alpha", "alpine"]
    assert await hub.manager.get_rooms_by_prefix("") == ["alpha", "alpine", "beta", "gamma"]
    assert await hub.manager.get_rooms_by_prefix("x") == []
    assert hub.manager.local_rooms() == ["alpha", "alpine", "beta", "gamma"]


# -- broadcasting -----------------------------------------------------------------


async def test_broadcast_exclude_skips_exactly_that_connection(make_hub: Any) -> None:
    hub = await make_hub()
    clients = [await hub.connect() for _ in range(3)]
    for conn, _ in clients:
        await hub.manager.join_room(conn, "lobby")
    skipped = clients[1][0]

    await hub.manager.broadcast_to_room("lobby", "hello", exclude=skipped.id)
    await broadcast_marker(hub, "lobby", [sock for _, sock in clients])

    assert [sock.frames for _, sock in clients] == [
        ["hello", "marker"],
        ["marker"],
        ["hello", "marker"],
    ]


class Joined(msgspec.Struct, tag="joined", tag_field="type"):
    payload: dict[str, str]


@pytest.mark.parametrize(
    "message",
    [
        pytest.param({"type": "joined", "payload": {"user": "Bob"}}, id="dict"),
        pytest.param(Joined(payload={"user": "Bob"}), id="struct"),
        pytest.param('{"type":"joined","payload":{"user":"Bob"}}', id="str"),
        pytest.param(b'{"type":"joined","payload":{"user":"Bob"}}', id="bytes"),
    ],
)
async def test_a_message_is_encoded_once_into_the_same_json_text(
    make_hub: Any, message: object
) -> None:
    hub = await make_hub()
    clients = [await hub.connect() for _ in range(2)]
    for conn, _ in clients:
        await hub.manager.join_room(conn, "lobby")

    await hub.manager.broadcast_to_room("lobby", message)

    expected = '{"type":"joined","payload":{"user":"Bob"}}'
    assert hub.backend.published == [expected.encode()]
    socks = [sock for _, sock in clients]
    for sock in socks:
        await sock.wait_for(lambda s=sock: s.frames == [expected])
    # Decoded once per process: every member is handed the very same string.
    assert socks[0].frames[0] is socks[1].frames[0]


async def test_send_to_connection(make_hub: Any) -> None:
    hub = await make_hub()
    conn, sock = await hub.connect()
    closed, _ = await hub.connect()
    await closed.close()

    assert await hub.manager.send_to_connection(conn.id, {"type": "direct"}) is True
    assert await hub.manager.send_to_connection("no-such-connection", {"x": 1}) is False
    assert await hub.manager.send_to_connection(closed.id, {"x": 1}) is False
    await sock.wait_for(lambda: sock.frames == ['{"type":"direct"}'])


# -- iteration --------------------------------------------------------------------


async def test_connections_iterates_a_snapshot_and_skips_closed_ones(make_hub: Any) -> None:
    hub = await make_hub()
    a, b, c, d = [(await hub.connect())[0] for _ in range(4)]
    await a.close()

    seen = []
    async for conn in hub.manager.connections():
        seen.append(conn)
        if conn is b:
            await hub.connect()  # registered during iteration: not in the snapshot
            await hub.manager.unregister(d)  # still in the snapshot, still open
            await c.close()  # closed before its turn: skipped

    assert seen == [b, d]


async def test_connections_of_a_room_iterates_a_snapshot(make_hub: Any) -> None:
    hub = await make_hub()
    a, b, c = [(await hub.connect())[0] for _ in range(3)]
    outsider, _ = await hub.connect()
    for conn in (a, b, c):
        await hub.manager.join_room(conn, "lobby")

    seen = []
    async for conn in hub.manager.connections(room="lobby"):
        seen.append(conn)
        if conn is a:
            await hub.manager.join_room(outsider, "lobby")
            for member in (a, b, c):
                await hub.manager.leave_room(member, "lobby")

    assert seen == [a, b, c]
    assert [conn async for conn in hub.manager.connections(room="lobby")] == [outsider]
    assert [conn async for conn in hub.manager.connections(room="nowhere")] == []


# -- membership -------------------------------------------------------------------


async def test_unregister_leaves_every_room(make_hub: Any) -> None:
    hub = await make_hub()
    conn, _ = await hub.connect()
    other, _ = await hub.connect()
    for room in ("r1", "r2", "r3"):
        await hub.manager.join_room(conn, room)
    await hub.manager.join_room(other, "r2")

    await hub.manager.unregister(conn)

    assert hub.manager.rooms_of(conn) == frozenset()
    assert hub.manager.local_rooms() == ["r2"]
    assert [m.connection_id for m in await hub.manager.room_members("r2")] == [other.id]
    assert not hub.backend.subscribed("r1")
    assert not hub.backend.subscribed("r3")
    assert [c async for c in hub.manager.connections()] == [other]


async def test_joining_twice_and_leaving_a_room_one_is_not_in_are_no_ops(
    make_hub: Any,
) -> None:
    hub = await make_hub()
    conn, _ = await hub.connect()
    await hub.manager.join_room(conn, "lobby")
    await hub.manager.join_room(conn, "lobby")
    assert hub.backend.calls == [("subscribe", "lobby"), ("member_joined", "lobby")]

    await hub.manager.leave_room(conn, "elsewhere")
    stranger, _ = await hub.connect()
    await hub.manager.leave_room(stranger, "lobby")
    assert len(hub.backend.calls) == 2
    assert hub.manager.rooms_of(conn) == {"lobby"}


@pytest.mark.parametrize("room", ["", None], ids=["empty", "not-a-string"])
async def test_room_names_must_be_non_empty_strings(make_hub: Any, room: Any) -> None:
    hub = await make_hub()
    conn, _ = await hub.connect()

    with pytest.raises(ValueError):
        await hub.manager.join_room(conn, room)
    with pytest.raises(ValueError):
        await hub.manager.broadcast_to_room(room, {"x": 1})
    assert hub.backend.calls == []


async def test_room_members_reports_presence_labels(make_hub: Any) -> None:
    hub = await make_hub()
    alice, _ = await hub.connect(presence="alice")
    bob, _ = await hub.connect()
    hub.manager.set_presence(bob, "bob")
    anonymous, _ = await hub.connect()
    for conn in (alice, bob, anonymous):
        await hub.manager.join_room(conn, "lobby")

    members = await hub.manager.room_members("lobby")

    assert sorted(members, key=lambda m: m.presence or "") == [
        Member(connection_id=anonymous.id, presence=None),
        Member(connection_id=alice.id, presence="alice"),
        Member(connection_id=bob.id, presence="bob"),
    ]


async def test_presence_is_first_in_last_out_per_identity(make_hub: Any) -> None:
    hub = await make_hub()
    changes: list[PresenceChange] = []

    async def hook(change: PresenceChange) -> None:
        changes.append(change)

    hub.manager.on_presence = hook
    tab1, _ = await hub.connect(presence="alice")
    tab2, _ = await hub.connect(presence="alice")
    bob, _ = await hub.connect(presence="bob")
    anonymous, _ = await hub.connect()
    for conn in (tab1, tab2, bob, anonymous):
        await hub.manager.join_room(conn, "lobby")
    assert await hub.manager.presence("lobby") == ["alice", "bob"]
    assert [(c.identity, c.present, c.connection_id) for c in changes] == [
        ("alice", True, tab1.id),
        ("bob", True, bob.id),
    ]

    await hub.manager.leave_room(tab1, "lobby")
    assert len(changes) == 2  # alice is still here
    await hub.manager.unregister(tab2)
    assert changes[-1] == PresenceChange(
        room="lobby", identity="alice", present=False, connection_id=tab2.id
    )
    assert await hub.manager.presence("lobby") == ["bob"]


async def test_connections_of_counts_an_identity_in_rooms(make_hub: Any) -> None:
    hub = await make_hub()
    tab1, _ = await hub.connect(presence="alice")
    tab2, _ = await hub.connect(presence="alice")
    for room in ("lobby", "other"):
        await hub.manager.join_room(tab1, room)
    await hub.manager.join_room(tab2, "lobby")
    assert await hub.manager.connections_of("alice") == 2
    await hub.manager.unregister(tab1)
    assert await hub.manager.connections_of("alice") == 1


async def test_a_join_cancelled_while_subscribing_leaves_no_subscription(
    make_hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = await make_hub()
    conn, _ = await hub.connect(presence="alice")
    broker = hub.backend.broker
    subscribing = asyncio.Event()
    original = broker.subscribe

    async def subscribe_then_hang(room: str) -> None:
        # As the NATS broker does: the subscription exists, the round trip hangs.
        await original(room)
        subscribing.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(broker, "subscribe", subscribe_then_hang)
    joining = asyncio.create_task(hub.manager.join_room(conn, "lobby"))
    await subscribing.wait()
    assert hub.backend.subscribed("lobby")
    joining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await joining
    assert not hub.backend.subscribed("lobby")  # unsubscribed on the way out
    assert hub.manager.local_rooms() == []


async def test_a_connection_relabelled_after_joining_leaves_as_who_it_joined(
    make_hub: Any,
) -> None:
    hub = await make_hub()
    conn, _ = await hub.connect(presence="anon")
    await hub.manager.join_room(conn, "lobby")
    hub.manager.set_presence(conn, "alice")
    await hub.manager.unregister(conn)
    assert await hub.manager.presence("lobby") == []


async def test_a_failing_presence_hook_does_not_undo_the_join(make_hub: Any) -> None:
    hub = await make_hub()

    async def hook(change: PresenceChange) -> None:
        raise RuntimeError("a bug in the hook")

    hub.manager.on_presence = hook
    conn, _ = await hub.connect(presence="alice")
    await hub.manager.join_room(conn, "lobby")
    assert hub.manager.rooms_of(conn) == {"lobby"}
    assert await hub.manager.presence("lobby") == ["alice"]


async def test_departures_during_shutdown_are_not_announced(make_hub: Any) -> None:
    hub = await make_hub()
    changes: list[PresenceChange] = []

    async def hook(change: PresenceChange) -> None:
        changes.append(change)

    hub.manager.on_presence = hook
    conn, _ = await hub.connect(presence="alice")
    await hub.manager.join_room(conn, "lobby")
    hub.manager.begin_shutdown()
    await hub.manager.unregister(conn)
    assert [c.present for c in changes] == [True]


async def test_stop_closes_open_connections_with_service_restart(make_hub: Any) -> None:
    hub = await make_hub()
    clients = [await hub.connect() for _ in range(2)]
    await hub.manager.join_room(clients[0][0], "lobby")

    async with asyncio.timeout(BOUND_S):
        await hub.manager.stop()

    for conn, sock in clients:
        assert conn.closed
        assert conn.close_code == 1012
        assert sock.closes == [(1012, "server shutting down")]


# -- concurrency ------------------------------------------------------------------


async def test_concurrent_joins_and_leaves_of_one_room_stay_consistent(make_hub: Any) -> None:
    hub = await make_hub(pause=True)
    conns = [(await hub.connect())[0] for _ in range(12)]

    await asyncio.gather(*(hub.manager.join_room(c, "lobby") for c in conns))
    assert hub.backend.subscriptions("lobby") == ["subscribe"]

    await asyncio.gather(*(hub.manager.leave_room(c, "lobby") for c in conns))
    assert hub.backend.subscriptions("lobby") == ["subscribe", "unsubscribe"]
    assert hub.manager.local_rooms() == []


@pytest.mark.parametrize("seed", range(5))
async def test_interleaved_joins_and_leaves_keep_subscribed_iff_members(
    make_hub: Any, seed: int
) -> None:
    hub = await make_hub(pause=True)
    rng = random.Random(seed)
    rooms = ["r1", "r2"]
    conns = [(await hub.connect())[0] for _ in range(8)]

    async def churn(conn: Connection, ops: list[tuple[bool, str]]) -> None:
        for join, room in ops:
            if join:
                await hub.manager.join_room(conn, room)
            else:
                await hub.manager.leave_room(conn, room)

    plans = [[(rng.random() < 0.6, rng.choice(rooms)) for _ in range(6)] for _ in conns]
    await asyncio.gather(*(churn(c, plan) for c, plan in zip(conns, plans, strict=True)))

    for room in rooms:
        members = [c async for c in hub.manager.connections(room=room)]
        expected = [c for c in conns if room in hub.manager.rooms_of(c)]
        assert {c.id for c in members} == {c.id for c in expected}
        subs = hub.backend.subscriptions(room)
        assert set(subs[::2]) <= {"subscribe"} and set(subs[1::2]) <= {"unsubscribe"}, subs
        assert hub.backend.subscribed(room) is bool(members)
        assert (room in hub.manager.local_rooms()) is bool(members)
        assert (room in await hub.manager.get_rooms_by_prefix("r")) is bool(members)


async def test_unregister_during_a_pending_join_leaves_no_ghost_member(make_hub: Any) -> None:
    hub = await make_hub()
    conn, _ = await hub.connect()
    hub.backend.gate.clear()
    join = asyncio.create_task(hub.manager.join_room(conn, "lobby"))
    async with asyncio.timeout(BOUND_S):
        await hub.backend.entered.wait()

    await hub.manager.unregister(conn)
    hub.backend.gate.set()
    async with asyncio.timeout(BOUND_S):
        (outcome,) = await asyncio.gather(join, return_exceptions=True)

    assert outcome is None or isinstance(outcome, ValueError)
    assert hub.manager.local_rooms() == []
    assert not hub.backend.subscribed("lobby")


async def test_a_slow_consumer_is_counted_once_and_others_still_receive(make_hub: Any) -> None:
    hub = await make_hub()
    fast, fast_sock = await hub.connect()
    slow, slow_sock = await hub.connect(max_queue_messages=2)
    slow_sock.reading.clear()  # this client stops reading
    for conn in (fast, slow):
        await hub.manager.join_room(conn, "lobby")
    for i in range(10):
        await hub.manager.broadcast_to_room("lobby", f"m{i}")
    await fast_sock.wait_for(lambda: "m9" in fast_sock.frames)
    assert slow.close_code == 4001
    await hub.manager.unregister(slow)
    await hub.manager.unregister(fast)
    assert hub.manager.stats.slow_consumers == 1
    assert hub.manager.stats.frames_delivered >= 10


# -- kicks ----------------------------------------------------------------------


async def test_kick_closes_every_connection_of_the_identity_with_4501(make_hub: Any) -> None:
    hub = await make_hub()
    alice = [await hub.connect("alice") for _ in range(2)]
    bob_conn, bob_sock = await hub.connect("bob")
    await hub.manager.join_room(alice[0][0], "lobby")
    await hub.manager.join_room(alice[1][0], "other")
    await hub.manager.join_room(bob_conn, "lobby")

    assert await hub.manager.kick("alice", reason="banned") == 2

    for _, sock in alice:
        await sock.wait_for(lambda s=sock: s.closes == [(4501, "banned")])
    assert bob_sock.closes == []
    assert not bob_conn.closed
    assert await hub.manager.kick("nobody") == 0


async def test_kick_in_one_room_leaves_the_identity_elsewhere_alone(make_hub: Any) -> None:
    hub = await make_hub()
    (in_lobby, lobby_sock), (elsewhere, _) = [await hub.connect("alice") for _ in range(2)]
    await hub.manager.join_room(in_lobby, "lobby")
    await hub.manager.join_room(elsewhere, "other")

    assert await hub.manager.kick("alice", room="lobby") == 1

    await lobby_sock.wait_for(lambda: lobby_sock.closes == [(4501, "kicked")])
    assert not elsewhere.closed


@pytest.mark.parametrize(
    ("identity", "room", "reason"),
    [
        pytest.param("", None, "kicked", id="empty-identity"),
        pytest.param("alice", "", "kicked", id="empty-room"),
        pytest.param("alice", None, "x" * 124, id="reason-over-123-bytes"),
        pytest.param("alice", None, "é" * 62, id="reason-over-123-utf8-bytes"),
    ],
)
async def test_kick_checks_its_arguments(
    make_hub: Any, identity: str, room: str | None, reason: str
) -> None:
    hub = await make_hub()
    with pytest.raises(ValueError):
        await hub.manager.kick(identity, room, reason=reason)


async def test_a_reason_of_123_bytes_is_accepted(make_hub: Any) -> None:
    hub = await make_hub()
    assert await hub.manager.kick("alice", reason="x" * 123) == 0


_member_ops = st.lists(
    st.tuples(
        st.booleans(),  # join (True) or leave
        st.sampled_from(["lobby", "other"]),
        st.sampled_from(["c1", "c2", "c3"]),
        st.sampled_from(["alice", "bob", None]),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(_member_ops)
def test_in_process_connections_of_counts_what_the_members_say(ops: list[Any]) -> None:
    # Counted as members come and go (asked on every join, never a scan of every
    # room), it must equal the distinct connections holding the label now.
    async def run() -> None:
        presence = InProcessPresence()
        members: dict[tuple[str, str], Member] = {}
        for joined, room, conn_id, label in ops:
            member = Member(connection_id=conn_id, presence=label)
            if joined:
                await presence.member_joined(room, member)
                members[(room, conn_id)] = member
            else:
                await presence.member_left(room, member)
                members.pop((room, conn_id), None)
            for identity in ("alice", "bob"):
                expected = {m.connection_id for m in members.values() if m.presence == identity}
                assert await presence.connections_of(identity) == len(expected)

    asyncio.run(run())
