"""Durable rooms on the in-process backend: positions, stamping, catch-up, loss.

The property test at the end drives the manager itself: publishes interleaved
with a join or a resume whose history read yields to the event loop at random
points, as a networked store does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from falcon_pachinko import (
    Backend,
    BackendError,
    CloseCode,
    Connection,
    ConnectionLimits,
    HistoryUnavailable,
    WebSocketConnectionManager,
)
from falcon_pachinko.backends import InProcessBroker, InProcessHistory, InProcessPresence
from falcon_pachinko.backends.memory import InProcessBackend
from falcon_pachinko.history import (
    Feed,
    HistoryBatch,
    Page,
    Position,
    RoomFeed,
    Stored,
    stamp_top_level,
)
from falcon_pachinko.testing import scaled

BOUND_S = scaled(0.5)
MakeConnection = Any  # conftest.make_connection


# -- positions and stamping ------------------------------------------------------


def test_stamp_adds_the_position_to_a_json_object() -> None:
    position = Position(seq=7, id="abc", ts=1700000000123)
    stamped = json.loads(stamp_top_level(b'{"type":"x","n":1}', position))
    assert stamped == {"type": "x", "n": 1, "seq": 7, "id": "abc", "ts": 1700000000123}
    empty = json.loads(stamp_top_level(b"{}", position))
    assert empty == {"seq": 7, "id": "abc", "ts": 1700000000123}


def test_stamp_leaves_anything_but_an_object_alone() -> None:
    position = Position(seq=1, id="a", ts=0)
    assert stamp_top_level(b"[1,2]", position) == b"[1,2]"
    assert stamp_top_level(b'"text"', position) == b'"text"'


def test_room_feed_delivers_in_order_and_drops_duplicates() -> None:
    feed = RoomFeed()
    assert feed.live(5, 3) is Feed.DELIVER  # whatever came before it, a start
    assert feed.live(9, 5) is Feed.DELIVER
    assert feed.live(9, 5) is Feed.DUPLICATE
    assert feed.live(4, 0) is Feed.DUPLICATE
    assert feed.live(12, None) is Feed.DELIVER  # a backend that cannot tell
    assert feed.last == 12


def test_room_feed_reports_a_gap_once_and_starts_over() -> None:
    feed = RoomFeed(last=9)
    assert feed.live(20, 15) is Feed.GAP  # 15 was never delivered here
    assert feed.live(21, 20) is Feed.DELIVER


# -- the in-process history --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make_history(**options: Any) -> tuple[InProcessHistory, list[tuple[Any, ...]], Clock]:
    delivered: list[tuple[Any, ...]] = []

    class Sink:
        def deliver(self, *args: Any) -> None:
            delivered.append(args)

    broker = InProcessBroker()
    broker._sink = Sink()  # type: ignore[assignment]
    clock = Clock()
    history = InProcessHistory(broker, clock=clock, **options)
    return history, delivered, clock


async def test_append_stores_then_delivers_with_a_position_and_the_rooms_previous() -> None:
    history, delivered, _ = make_history()
    await history._broker.subscribe("a")
    first = await history.append("a", b'{"n":1}')
    await history.append("b", b'{"n":2}')
    third = await history.append("a", b'{"n":3}', exclude="c1")
    assert first.position.seq < third.position.seq and not third.duplicate
    assert [(d[1], d[2], d[4]) for d in delivered] == [
        (b'{"n":1}', None, 0),
        (b'{"n":3}', "c1", first.position.seq),  # the previous message of room a
    ]
    assert delivered[1][3] == third.position


async def test_a_key_reused_within_the_window_is_a_duplicate_in_that_room_only() -> None:
    history, delivered, clock = make_history(dedup_window_s=10)
    await history._broker.subscribe("a")
    first = await history.append("a", b"{}", key="k1")
    again = await history.append("a", b"{}", key="k1")
    other_room = await history.append("b", b"{}", key="k1")
    assert again.duplicate and again.position == first.position
    assert not other_room.duplicate
    assert len(delivered) == 1
    clock.now += 11
    later = await history.append("a", b"{}", key="k1")
    assert not later.duplicate and later.position.seq > first.position.seq


async def test_reads_latest_before_and_after_with_more() -> None:
    history, _, _ = make_history()
    seqs = [(await history.append("a", b'{"n":%d}' % i)).position.seq for i in range(5)]
    await history.append("b", b"{}")
    latest = await history.latest("a", limit=2)
    assert [m.position.seq for m in latest.messages] == seqs[-2:] and latest.more
    older = await history.latest("a", limit=10, before=seqs[2])
    assert [m.position.seq for m in older.messages] == seqs[:2] and not older.more
    after = await history.after("a", seqs[1], limit=2)
    assert [m.position.seq for m in after.messages] == seqs[2:4] and after.more
    assert (await history.latest("empty", limit=5)) == Page([], more=False)
    assert await history.has("a", seqs[0]) and not await history.has("b", seqs[0])


async def test_retention_keeps_the_newest_by_count_and_by_age() -> None:
    history, _, clock = make_history(max_messages_per_room=3, max_age_s=60)
    seqs = [(await history.append("a", b"{}")).position.seq for _ in range(5)]
    assert [m.position.seq for m in (await history.latest("a", limit=10)).messages] == seqs[2:]
    assert not await history.has("a", seqs[1])
    clock.now += 61
    assert (await history.latest("a", limit=10)).messages == []


# -- the manager ----------------------------------------------------------------


class Hub:
    def __init__(self, make_connection: MakeConnection, manager: WebSocketConnectionManager):
        self.manager = manager
        self._make = make_connection

    async def connect(self, *, accept: bool = True, **limits: Any) -> tuple[Connection, Any]:
        conn, sock = self._make(**limits)
        self.manager.register(conn, None)
        if accept:
            await conn.accept()
        return conn, sock


@pytest.fixture
async def hub(make_connection: MakeConnection) -> Any:
    manager = WebSocketConnectionManager(InProcessBackend())
    await manager.start()
    yield Hub(make_connection, manager)
    async with asyncio.timeout(BOUND_S):
        await manager.stop()


def decoded(sock: Any) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in sock.frames]


async def publish(hub: Hub, room: str, n: int, **options: Any) -> list[int]:
    seqs = []
    for i in range(n):
        appended = await hub.manager.broadcast_to_room(room, {"n": i}, persist=True, **options)
        seqs.append(appended.position.seq)
    return seqs


async def test_a_persisted_broadcast_reaches_members_stamped(hub: Hub) -> None:
    conn, sock = await hub.connect()
    other, other_sock = await hub.connect()
    for c in (conn, other):
        await hub.manager.join_room(c, "r")
    appended = await hub.manager.broadcast_to_room("r", {"n": 1}, persist=True, exclude=other.id)
    await sock.wait_for(lambda: len(sock.frames) == 1)
    position = appended.position
    assert decoded(sock) == [{"n": 1, "seq": position.seq, "id": position.id, "ts": position.ts}]
    assert other_sock.frames == []
    assert hub.manager.stats.messages_stored == 1


async def test_history_is_stamped_and_pages_back(hub: Hub) -> None:
    seqs = await publish(hub, "r", 4)
    page = await hub.manager.history("r", before=seqs[3], limit=2)
    assert [json.loads(m.data)["seq"] for m in page.messages] == seqs[1:3]
    assert page.more
    with pytest.raises(ValueError):
        await hub.manager.history("r", limit=0)


async def test_a_join_with_history_gets_it_after_its_own_frames_then_live(hub: Hub) -> None:
    seqs = await publish(hub, "r", 5)
    conn, sock = await hub.connect(accept=False)
    await hub.manager.join_room(conn, "r", history=3)
    await conn.send_media({"welcome": True})
    seqs += await publish(hub, "r", 1)  # stored before the read: history, not live too
    await conn.accept()
    await hub.manager.catch_up(conn)
    seqs += await publish(hub, "r", 1)
    await sock.wait_for(lambda: len(sock.frames) == 3)
    welcome, batch, live = decoded(sock)
    assert welcome == {"welcome": True}
    assert batch["type"] == "history" and batch["complete"] is False
    assert [m["seq"] for m in batch["messages"]] == seqs[3:6]
    assert "resumed" not in batch
    assert live["seq"] == seqs[6]


async def test_a_resume_gets_exactly_what_followed_the_cursor(hub: Hub) -> None:
    seqs = await publish(hub, "r", 6)
    conn, sock = await hub.connect()
    await hub.manager.join_room(conn, "r", since=seqs[2])  # accepted: catches up at once
    await sock.wait_for(lambda: bool(sock.frames))
    (batch,) = decoded(sock)
    assert [m["seq"] for m in batch["messages"]] == seqs[3:]
    assert batch["resumed"] is True


async def test_a_resume_past_retention_gets_the_recent_history_and_resumed_false(
    make_connection: MakeConnection,
) -> None:
    manager = WebSocketConnectionManager(InProcessBackend(max_messages_per_room=3))
    await manager.start()
    hub = Hub(make_connection, manager)
    seqs = await publish(hub, "r", 6)
    conn, sock = await hub.connect()
    await manager.join_room(conn, "r", since=seqs[0], history=2)
    await sock.wait_for(lambda: bool(sock.frames))
    (batch,) = decoded(sock)
    assert batch["resumed"] is False
    assert [m["seq"] for m in batch["messages"]] == seqs[-2:]
    await manager.stop()


async def test_durable_joins_need_a_backend_with_history(make_connection: MakeConnection) -> None:
    manager = WebSocketConnectionManager(Backend(InProcessBroker(), InProcessPresence()))
    await manager.start()
    conn, _ = make_connection()
    manager.register(conn, None)
    with pytest.raises(HistoryUnavailable):
        await manager.join_room(conn, "r", history=5)
    with pytest.raises(HistoryUnavailable):
        await manager.broadcast_to_room("r", {}, persist=True)
    assert manager.rooms_of(conn) == frozenset()
    await manager.stop()


async def test_a_gap_in_a_rooms_feed_closes_its_members_with_resync(hub: Hub) -> None:
    conn, sock = await hub.connect()
    await hub.manager.join_room(conn, "r")
    hub.manager.deliver("r", b"{}", None, Position(seq=10, id="a", ts=0), 0)
    hub.manager.deliver("r", b"{}", None, Position(seq=12, id="b", ts=0), 11)  # 11 is lost
    await sock.wait_for(lambda: bool(sock.closes))
    assert sock.closes[0][0] == CloseCode.RESYNC
    assert len(sock.frames) <= 1  # never the message after the gap
    assert hub.manager.stats.resyncs == 1


async def test_a_catch_up_that_overflows_closes_with_resync(hub: Hub) -> None:
    await publish(hub, "r", 1)
    conn, sock = await hub.connect(accept=False, max_queue_messages=2)
    await hub.manager.join_room(conn, "r", history=5)
    await publish(hub, "r", 3)  # held: more than its queue takes
    await conn.accept()
    await hub.manager.catch_up(conn)
    await sock.wait_for(lambda: bool(sock.closes))
    assert sock.closes[0][0] == CloseCode.RESYNC


async def test_an_unreadable_history_closes_with_resync(hub: Hub) -> None:
    history = hub.manager.backend.history

    async def broken(*args: Any, **kwargs: Any) -> Page:
        raise BackendError("store away")

    history.latest = broken  # type: ignore[method-assign,union-attr]
    conn, sock = await hub.connect()
    await hub.manager.join_room(conn, "r", history=5)
    await sock.wait_for(lambda: bool(sock.closes))
    assert sock.closes[0][0] == CloseCode.RESYNC


async def test_a_custom_stamp_and_render_shape_what_clients_see(
    make_connection: MakeConnection,
) -> None:
    def stamp(data: bytes, position: Position) -> bytes:
        return b'{"at":%d,"body":%s}' % (position.seq, data)

    manager = WebSocketConnectionManager(InProcessBackend(), stamp=stamp)
    await manager.start()
    hub = Hub(make_connection, manager)
    seqs = await publish(hub, "r", 2)
    conn, sock = await hub.connect()

    def render(batch: HistoryBatch) -> object:
        return {"page": [json.loads(m.data)["at"] for m in batch.messages]}

    await manager.join_room(conn, "r", history=5, render=render)
    await sock.wait_for(lambda: bool(sock.frames))
    assert decoded(sock) == [{"page": seqs}]
    await manager.stop()


# -- the merge of history and live traffic, for any interleaving -----------------


class YieldingHistory(InProcessHistory):
    """Reads yield to the event loop a chosen number of times first, as a network does."""

    def __init__(self, broker: InProcessBroker, pauses: Callable[[], int], **options: Any):
        super().__init__(broker, **options)
        self._pauses = pauses

    async def _pause(self) -> None:
        for _ in range(self._pauses()):
            await asyncio.sleep(0)

    async def latest(self, room: str, *, limit: int, before: int | None = None) -> Page:
        await self._pause()
        return await super().latest(room, limit=limit, before=before)

    async def after(self, room: str, after: int, *, limit: int) -> Page:
        await self._pause()
        page = await super().after(room, after, limit=limit)
        await self._pause()  # the page is stale by the time it arrives
        return page

    async def has(self, room: str, seq: int) -> bool:
        await self._pause()
        return await super().has(room, seq)


class DelayingBroker(InProcessBroker):
    """Live copies of stored messages arrive late, in order, as over a network.

    Whether a copy is sent is decided when it is stored (the subscription at the
    server); it reaches the manager after a chosen number of event-loop turns.
    """

    def __init__(self, delays: Callable[[], int]) -> None:
        super().__init__()
        self._delays = delays
        self._queue: asyncio.Queue[tuple[str, Stored, int] | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    def publish_stored(self, room: str, stored: Stored, prev: int) -> None:
        if self._sink is not None and room in self._rooms:
            if self._pump is None:
                self._pump = asyncio.create_task(self._run())
            self._queue.put_nowait((room, stored, prev))

    async def drained(self) -> None:
        if self._pump is not None:
            self._queue.put_nowait(None)
            await self._pump

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            for _ in range(self._delays()):
                await asyncio.sleep(0)
            room, stored, prev = item
            if self._sink is not None and room in self._rooms:
                self._sink.deliver(room, stored.data, stored.exclude, stored.position, prev)


class _Socket:
    def __init__(self) -> None:
        self.frames: list[str] = []
        self.closes: list[int] = []

    async def accept(self, subprotocol: str | None = None) -> None:
        pass

    async def send_text(self, payload: str) -> None:
        self.frames.append(payload)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closes.append(code)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.integers(0, 250),
    during=st.integers(0, 40),
    cursor_index=st.one_of(st.none(), st.integers(0, 249)),
    history=st.integers(0, 60),
    retention=st.integers(1, 300),
    pauses=st.lists(st.integers(0, 3), min_size=1, max_size=8),
    publish_gaps=st.lists(st.integers(0, 2), min_size=1, max_size=8),
    delays=st.lists(st.integers(0, 4), min_size=1, max_size=8),
)
def test_every_message_after_the_cursor_arrives_exactly_once_in_order(
    before: int,
    during: int,
    cursor_index: int | None,
    history: int,
    retention: int,
    pauses: list[int],
    publish_gaps: list[int],
    delays: list[int],
) -> None:
    asyncio.run(
        _merge_case(before, during, cursor_index, history, retention, pauses, publish_gaps, delays)
    )


async def _merge_case(
    before: int,
    during: int,
    cursor_index: int | None,
    history: int,
    retention: int,
    pauses: list[int],
    publish_gaps: list[int],
    delays: list[int],
) -> None:
    turn = iter(range(10**9))
    late = iter(range(10**9))
    broker = DelayingBroker(lambda: delays[next(late) % len(delays)])
    store = YieldingHistory(
        broker, lambda: pauses[next(turn) % len(pauses)], max_messages_per_room=retention
    )
    manager = WebSocketConnectionManager(Backend(broker, InProcessPresence(), store))
    await manager.start()
    seqs = []
    for i in range(before):
        appended = await manager.broadcast_to_room("r", {"n": i}, persist=True)
        seqs.append(appended.position.seq)
    since = seqs[min(cursor_index, len(seqs) - 1)] if cursor_index is not None and seqs else None

    sock = _Socket()
    conn = Connection(sock, ConnectionLimits(max_queue_messages=10_000))  # type: ignore[arg-type]
    manager.register(conn, None)

    after_join: list[int] = []  # published once join_room had returned
    joined = False

    async def chatter() -> list[int]:
        out = []
        for i in range(during):
            for _ in range(publish_gaps[i % len(publish_gaps)]):
                await asyncio.sleep(0)
            appended = await manager.broadcast_to_room("r", {"n": before + i}, persist=True)
            out.append(appended.position.seq)
            if joined:
                after_join.append(appended.position.seq)
        return out

    talking = asyncio.create_task(chatter())
    await asyncio.sleep(0)
    await manager.join_room(conn, "r", history=history, since=since)
    joined = True
    await conn.accept()
    await manager.catch_up(conn)
    live_seqs = await talking
    await broker.drained()
    await conn.close()
    await conn.finish()
    await manager.stop()
    _check_merge(sock.frames, seqs, live_seqs, after_join, since, history, retention, during)


def _check_merge(
    frames: list[str],
    seqs: list[int],
    live_seqs: list[int],
    after_join: list[int],
    since: int | None,
    history: int,
    retention: int,
    during: int,
) -> None:
    received: list[int] = []
    from_history = 0
    resumed = None
    for frame in frames:
        message = msgspec.json.decode(frame)
        if message.get("type") == "history":
            received += [m["seq"] for m in message["messages"]]
            from_history += len(message["messages"])
            resumed = message.get("resumed", resumed)
        else:
            received.append(message["seq"])
    assert received == sorted(set(received)), "out of order or twice"
    everything = seqs + live_seqs
    never_evicted = retention >= len(everything)
    if since is not None and never_evicted:
        assert resumed is True, "a resume within retention must complete"
    if resumed is True:
        assert received == [s for s in everything if s > since], "not exactly what followed"
        return
    # A fresh join, or a resume whose cursor had expired: at most `history`
    # stored messages, then every later one with no gap.
    assert resumed is (None if since is None else False)
    assert from_history <= history + during  # live ones it overtook are merged in
    # A fresh join sees a suffix of the room: with live copies arriving late, a
    # message published just after the join may fall before the history's window
    # (the read saw newer ones first), but never between what it was sent.
    if received:
        first = everything.index(received[0])
        assert received == everything[first:], "a gap"
    assert not after_join or received[-1:] == everything[-1:], "a live message was missed"


# -- after the link to the broker came back ---------------------------------------


async def test_recheck_closes_the_members_of_a_room_that_missed_stored_messages(
    hub: Hub,
) -> None:
    conn, sock = await hub.connect()
    quiet, quiet_sock = await hub.connect()
    await hub.manager.join_room(conn, "busy")
    await hub.manager.join_room(quiet, "quiet")
    await publish(hub, "busy", 1)
    await publish(hub, "quiet", 1)
    await sock.wait_for(lambda: len(sock.frames) == 1)
    assert await hub.manager.recheck_rooms() == 0  # nothing was missed

    broker = hub.manager.backend.broker
    await broker.unsubscribe("busy")  # cut off: stored, republished to no one here
    await publish(hub, "busy", 1)
    await broker.subscribe("busy")
    assert await hub.manager.recheck_rooms() == 1
    await sock.wait_for(lambda: bool(sock.closes))
    assert sock.closes[0][0] == CloseCode.RESYNC
    assert not quiet.closed and quiet_sock.closes == []


async def test_recheck_counts_what_a_catch_up_sent(hub: Hub) -> None:
    await publish(hub, "r", 3)
    conn, sock = await hub.connect()
    await hub.manager.join_room(conn, "r", history=2)  # no live message yet
    assert await hub.manager.recheck_rooms() == 0
    assert not conn.closed


# -- a duplicate send ----------------------------------------------------------------


async def test_a_duplicate_is_answered_with_the_original_only_when_not_covered(
    hub: Hub,
) -> None:
    first = await hub.manager.broadcast_to_room("r", {"n": 0}, persist=True, key="k")
    await publish(hub, "r", 2)
    covered, covered_sock = await hub.connect()
    await hub.manager.join_room(covered, "r", history=10)  # the whole room: covers it
    partial, partial_sock = await hub.connect()
    await hub.manager.join_room(partial, "r", history=1)  # not back to the original
    for sock in (covered_sock, partial_sock):
        await sock.wait_for(lambda s=sock: len(s.frames) == 1)

    again = await hub.manager.broadcast_to_room("r", {"n": 0}, persist=True, key="k")
    assert again is not None and again.duplicate and first is not None
    assert again.position == first.position
    assert not await hub.manager.resend_original(covered, "r", again)
    assert await hub.manager.resend_original(partial, "r", again)
    await partial_sock.wait_for(lambda: len(partial_sock.frames) == 2)
    original = json.loads(partial_sock.frames[-1])
    assert original == {
        "n": 0,
        "seq": first.position.seq,
        "id": first.position.id,
        "ts": first.position.ts,
    }
    assert len(covered_sock.frames) == 1  # nothing more: no second copy anywhere
    assert hub.manager.stats.duplicates == 1


async def test_a_resume_past_retention_without_recent_history_asked_is_told_so(
    make_connection: MakeConnection,
) -> None:
    class NoZeroReads(InProcessHistory):
        async def latest(self, room: str, *, limit: int, before: int | None = None) -> Page:
            assert limit >= 1, "JetStream refuses a read of 0 messages"
            return await super().latest(room, limit=limit, before=before)

    broker = InProcessBroker()
    manager = WebSocketConnectionManager(Backend(broker, InProcessPresence(), NoZeroReads(broker)))
    await manager.start()
    conn, sock = await Hub(make_connection, manager).connect()
    await manager.join_room(conn, "r", since=0)
    await sock.wait_for(lambda: bool(sock.frames))
    (batch,) = decoded(sock)
    assert batch["messages"] == [] and batch["resumed"] is False
    await manager.stop()


# -- late copies, quiet rooms and the edges of a catch-up ----------------------------


def late_copy(hub: Hub, room: str, seq: int, prev: int) -> None:
    """The live copy of a stored message arriving again, late (a redelivery)."""
    hub.manager.deliver(room, b'{"late":true}', None, Position(seq=seq, id="x", ts=0), prev)


async def test_a_resume_never_releases_a_late_copy_from_before_its_cursor(hub: Hub) -> None:
    seqs = await publish(hub, "r", 3)
    conn, sock = await hub.connect(accept=False)
    await hub.manager.join_room(conn, "r", since=seqs[2])
    late_copy(hub, "r", seqs[2], seqs[1])  # held while the resume reads
    await conn.accept()
    await hub.manager.catch_up(conn)
    seqs += await publish(hub, "r", 1)
    await sock.wait_for(lambda: len(sock.frames) == 2)
    batch, live = decoded(sock)
    assert batch["messages"] == [] and batch["resumed"] is True
    assert live["seq"] == seqs[3]


async def test_a_late_copy_of_what_the_history_sent_is_not_sent_again(hub: Hub) -> None:
    seqs = await publish(hub, "r", 2)
    conn, sock = await hub.connect()
    await hub.manager.join_room(conn, "r", history=5)
    await sock.wait_for(lambda: len(sock.frames) == 1)
    late_copy(hub, "r", seqs[1], seqs[0])  # its live copy, after the catch-up ended
    seqs += await publish(hub, "r", 1)
    await sock.wait_for(lambda: len(sock.frames) == 2)
    assert decoded(sock)[1]["seq"] == seqs[2]
    assert not conn.closed


async def test_a_member_that_had_no_history_still_gets_a_late_first_copy(hub: Hub) -> None:
    # The room's feed is shared: what one member's history covered, another lacks.
    plain, plain_sock = await hub.connect()
    await hub.manager.join_room(plain, "r")
    broker = hub.manager.backend.broker
    await broker.unsubscribe("r")  # the live copy is late: stored, not yet here
    seqs = await publish(hub, "r", 1)
    await broker.subscribe("r")
    reader, reader_sock = await hub.connect()
    await hub.manager.join_room(reader, "r", history=5)
    await reader_sock.wait_for(lambda: len(reader_sock.frames) == 1)
    late_copy(hub, "r", seqs[0], 0)
    await plain_sock.wait_for(lambda: len(plain_sock.frames) == 1)
    assert len(reader_sock.frames) == 1


async def test_a_loss_right_after_a_history_read_closes_with_resync(hub: Hub) -> None:
    seqs = await publish(hub, "r", 2)
    conn, sock = await hub.connect()
    await hub.manager.join_room(conn, "r", history=5)
    await sock.wait_for(lambda: len(sock.frames) == 1)
    # The next live message follows one this process never received.
    hub.manager.deliver("r", b"{}", None, Position(seq=seqs[1] + 5, id="y", ts=0), seqs[1] + 3)
    await sock.wait_for(lambda: bool(sock.closes))
    assert sock.closes[0][0] == CloseCode.RESYNC
    assert len(sock.frames) == 1


async def test_recheck_leaves_quiet_rooms_alone(hub: Hub) -> None:
    seqs = await publish(hub, "resumed", 3)
    await publish(hub, "plain", 2)
    resumer, resumer_sock = await hub.connect()
    await hub.manager.join_room(resumer, "resumed", since=seqs[2])  # nothing after it
    plain, _ = await hub.connect()
    await hub.manager.join_room(plain, "plain")  # no history asked, no message since
    await resumer_sock.wait_for(lambda: len(resumer_sock.frames) == 1)
    assert await hub.manager.recheck_rooms() == 0
    assert not resumer.closed and not plain.closed


async def test_recheck_that_cannot_read_the_store_closes_with_resync(hub: Hub) -> None:
    conn, sock = await hub.connect()
    await hub.manager.join_room(conn, "r")
    await publish(hub, "r", 1)
    history = hub.manager.backend.history
    calls = 0

    async def away(room: str) -> int | None:
        nonlocal calls
        calls += 1
        raise BackendError("store away")

    history.last_seq = away  # type: ignore[method-assign,union-attr]
    assert await hub.manager.recheck_rooms(attempts=3, backoff_s=0) == 1
    assert calls == 3
    await sock.wait_for(lambda: bool(sock.closes))
    assert sock.closes[0][0] == CloseCode.RESYNC


async def test_a_recheck_read_that_fails_once_is_retried(hub: Hub) -> None:
    conn, _ = await hub.connect()
    await hub.manager.join_room(conn, "r")
    await publish(hub, "r", 1)
    history = hub.manager.backend.history
    assert history is not None
    real = history.last_seq
    failures = [BackendError("blip")]

    async def flaky(room: str) -> int | None:
        if failures:
            raise failures.pop()
        return await real(room)

    history.last_seq = flaky  # type: ignore[method-assign]
    assert await hub.manager.recheck_rooms(attempts=3, backoff_s=0) == 0
    assert not conn.closed


async def test_held_messages_that_do_not_fit_after_the_history_close_with_resync(
    hub: Hub,
) -> None:
    await publish(hub, "r", 1)
    conn, sock = await hub.connect(accept=False, max_queue_messages=3)
    await hub.manager.join_room(conn, "r", history=5)
    await conn.send_media({"welcome": True})
    for seq in (100, 101, 102):  # stored after the read: held, as many as its queue takes
        hub.manager.deliver("r", b"{}", None, Position(seq=seq, id=str(seq), ts=0), seq - 1)
    sock.reading.clear()  # the welcome is being written; the history frame waits
    await conn.accept()
    await hub.manager.catch_up(conn)
    sock.reading.set()
    await sock.wait_for(lambda: bool(sock.closes))
    assert sock.closes[0][0] == CloseCode.RESYNC


async def test_leaving_while_the_history_is_sent_releases_nothing(hub: Hub) -> None:
    await publish(hub, "r", 1)
    conn, sock = await hub.connect(accept=False, max_queue_messages=1)
    await hub.manager.join_room(conn, "r", history=5)
    await conn.send_media({"welcome": True})
    await publish(hub, "r", 1)  # held
    sock.reading.clear()
    await conn.accept()
    await sock.wait_for(lambda: sock.stalled == 1)  # the welcome is being written
    await conn.send_media({"roster": True})  # the queue is full: the history waits
    catching_up = asyncio.create_task(hub.manager.catch_up(conn))
    await asyncio.sleep(0)  # it reads (in memory: no wait), then waits for space
    assert not catching_up.done()
    await hub.manager.leave_room(conn, "r")
    sock.reading.set()
    async with asyncio.timeout(BOUND_S):
        await catching_up
    await sock.wait_for(lambda: len(sock.frames) >= 3)
    assert [m.get("type") for m in decoded(sock)] == [None, None, "history"]
    assert hub.manager._replays.covered("r", conn.id) is None


async def test_a_resend_at_or_before_a_resume_cursor_is_answered(hub: Hub) -> None:
    first = await hub.manager.broadcast_to_room("r", {"n": 0}, persist=True, key="k")
    later = await publish(hub, "r", 1)
    conn, sock = await hub.connect()
    await hub.manager.join_room(conn, "r", since=later[0])
    await sock.wait_for(lambda: len(sock.frames) == 1)
    again = await hub.manager.broadcast_to_room("r", {"n": 0}, persist=True, key="k")
    assert first is not None and again is not None
    # It cannot know what the earlier connection saw: the sender gets its answer.
    assert await hub.manager.resend_original(conn, "r", again)
    after = await hub.manager.broadcast_to_room("r", {"n": 9}, persist=True, key="k2")
    assert after is not None
    again = await hub.manager.broadcast_to_room("r", {"n": 9}, persist=True, key="k2")
    assert again is not None and again.duplicate
    assert not await hub.manager.resend_original(conn, "r", again)  # it came live


async def test_a_join_without_history_covers_what_comes_live(hub: Hub) -> None:
    before = await hub.manager.broadcast_to_room("r", {"n": 0}, persist=True, key="old")
    conn, sock = await hub.connect()
    await hub.manager.join_room(conn, "r")
    live = await hub.manager.broadcast_to_room("r", {"n": 1}, persist=True, key="new")
    await sock.wait_for(lambda: len(sock.frames) == 1)
    assert before is not None and live is not None
    again = await hub.manager.broadcast_to_room("r", {"n": 1}, persist=True, key="new")
    assert again is not None and not await hub.manager.resend_original(conn, "r", again)
    again = await hub.manager.broadcast_to_room("r", {"n": 0}, persist=True, key="old")
    assert again is not None and await hub.manager.resend_original(conn, "r", again)


# -- the in-process history's bounds ---------------------------------------------------


async def test_the_total_byte_bound_drops_the_oldest_whatever_their_room() -> None:
    clock = Clock()
    store = InProcessHistory(InProcessBroker(), max_bytes=300, clock=clock)
    old = await store.append("quiet", b"q" * 100)
    await store.append("busy", b"b" * 100)
    await store.append("busy", b"b" * 100)
    assert store.stored_bytes == 300
    await store.append("busy", b"b" * 100)  # over: the oldest message overall goes
    assert store.stored_bytes == 300
    assert not await store.has("quiet", old.position.seq)
    assert (await store.latest("quiet", limit=10)).messages == []
    assert "quiet" not in store._rooms  # an emptied room is forgotten
    assert len((await store.latest("busy", limit=10)).messages) == 3


async def test_an_idle_room_ages_out_when_any_room_is_written() -> None:
    clock = Clock()
    store = InProcessHistory(InProcessBroker(), max_age_s=60, clock=clock)
    await store.append("idle", b"x" * 50)
    clock.now += 61
    await store.append("other", b"y")
    assert store.stored_bytes == 1 and "idle" not in store._rooms


async def test_per_room_trims_keep_the_byte_count_and_the_order_bounded() -> None:
    store = InProcessHistory(InProcessBroker(), max_messages_per_room=2, clock=Clock())
    for _ in range(5000):
        await store.append("r", b"abc")
    assert store.stored_bytes == 6
    assert len(store._order) <= 2 * 2 + 1024  # stale entries are compacted away


async def test_a_loss_while_the_first_member_reads_its_history_closes_with_resync(
    hub: Hub,
) -> None:
    seqs = await publish(hub, "r", 2)
    conn, sock = await hub.connect(accept=False)
    await hub.manager.join_room(conn, "r", history=5)  # reading; the feed knows no base yet
    lost = seqs[1] + 1  # stored, but its live copy never arrives here
    hub.manager.deliver("r", b'{"n":9}', None, Position(seq=lost + 1, id="y", ts=0), lost)
    await conn.accept()
    await hub.manager.catch_up(conn)
    await sock.wait_for(lambda: bool(sock.closes))
    assert sock.closes[0][0] == CloseCode.RESYNC
    seen = [m["seq"] for f in decoded(sock) for m in f.get("messages", [f])]
    assert lost + 1 not in seen  # never the message after the hole
