"""Durable rooms on JetStream: NatsHistory and the broker's delivery of positions,
over a real nats-server (JetStream on, its store under the test's tmp_path)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client

from falcon_pachinko import BackendError
from falcon_pachinko.backends.nats import (
    NatsBackend,
    NatsHistory,
    NatsHistoryConfig,
    flush_sent,
)
from falcon_pachinko.history import Page, Position
from falcon_pachinko.subjects import Subjects
from falcon_pachinko.testing import scaled
from falcon_pachinko.testing.nats import NatsServer

pytestmark = pytest.mark.integration

BOUND_S = scaled(3.0)
#: The bound on every operation of the histories under test.
REQUEST_TIMEOUT_S = 2.0

Cluster = Any  # conftest.Cluster
ConnectionEvents = Any  # conftest.ConnectionEvents


class Delivery(msgspec.Struct, frozen=True):
    room: str
    data: bytes
    exclude: str | None
    position: Position | None
    prev: int | None


class Sink:
    """A ``BackendSink`` that keeps every room delivery, positions included."""

    def __init__(self) -> None:
        self.delivered: list[Delivery] = []
        self._changed = asyncio.Event()

    def deliver(
        self,
        room: str,
        data: bytes,
        exclude: str | None,
        position: Position | None = None,
        prev: int | None = None,
    ) -> None:
        self.delivered.append(Delivery(room, data, exclude, position, prev))
        self._changed.set()

    def deliver_to_connection(self, connection_id: str, data: bytes) -> bool:
        return False

    def kick_local(self, identity: str, room: str | None, reason: str) -> int:
        return 0

    async def presence_changed(self, change: Any) -> None:
        return None

    def of(self, room: str) -> list[Delivery]:
        return [d for d in self.delivered if d.room == room]

    async def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(BOUND_S):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not delivered within {BOUND_S:.1f}s: {what}") from None


class Kit:
    """Histories and backends on the test's nats-server; all stopped at the end."""

    def __init__(self, cluster: Cluster, stack: contextlib.AsyncExitStack) -> None:
        self.cluster = cluster
        self.server: NatsServer = cluster.server
        self._stack = stack

    async def client(self, events: ConnectionEvents | None = None) -> Client:
        nc: Client = await self.cluster.client(events)
        return nc

    async def history(
        self,
        config: NatsHistoryConfig | None = None,
        *,
        nc: Client | None = None,
        events: ConnectionEvents | None = None,
        start: bool = True,
    ) -> NatsHistory:
        """A history on its own client (reconnecting forever)."""
        if nc is None:
            nc = await self.client(events)
        history = NatsHistory(
            nc, Subjects("chat"), "node-test", config, request_timeout_s=REQUEST_TIMEOUT_S
        )
        if start:
            await history.start()
        self._stack.push_async_callback(history.stop)
        return history

    async def backend(self, config: NatsHistoryConfig | None = None) -> tuple[NatsBackend, Sink]:
        """A started backend with a history, delivering into a recording sink."""
        backend = NatsBackend(
            servers=self.server.url,
            presence=False,
            request_timeout_s=REQUEST_TIMEOUT_S,
            history=config or NatsHistoryConfig(),
        )
        sink = Sink()
        await backend.start(sink)
        self._stack.push_async_callback(backend.stop)
        return backend, sink

    async def stream_info(self, name: str = "CHAT_HISTORY") -> Any:
        nc = await self.client()
        return await nc.jetstream(timeout=BOUND_S).stream_info(name)


@pytest.fixture
async def kit(cluster: Cluster) -> AsyncIterator[Kit]:
    async with contextlib.AsyncExitStack() as stack:
        yield Kit(cluster, stack)


def seqs(page: Page) -> list[int]:
    return [m.position.seq for m in page.messages]


def history_of(backend: NatsBackend) -> NatsHistory:
    assert isinstance(backend.history, NatsHistory)
    return backend.history


async def wait_connected(events: ConnectionEvents) -> None:
    async with asyncio.timeout(BOUND_S):
        await events.reconnected.wait()


# -- storing and delivering -------------------------------------------------------


async def test_append_gives_increasing_positions_delivered_live_with_prev_per_room(
    kit: Kit,
) -> None:
    sender, _ = await kit.backend()
    receiver, sink = await kit.backend()
    for room in ("a", "b"):
        await receiver.broker.subscribe(room)
    history = history_of(sender)

    before_ms = time.time_ns() // 1_000_000
    order = ["a", "b", "a", "a", "b", "a"]
    appended = [
        (room, n, await history.append(room, b'{"n":%d}' % n)) for n, room in enumerate(order)
    ]
    after_ms = time.time_ns() // 1_000_000

    positions = [result.position for _, _, result in appended]
    assert [p.seq for p in positions] == sorted({p.seq for p in positions})  # increasing
    assert not any(result.duplicate for _, _, result in appended)
    assert all(before_ms <= p.ts <= after_ms for p in positions)
    assert len({p.id for p in positions}) == len(positions)
    await sink.wait_for(lambda: len(sink.delivered) == len(order), "every durable message")
    for room in ("a", "b"):
        sent = [(n, result.position) for r, n, result in appended if r == room]
        got = sink.of(room)
        assert [(d.data, d.position) for d in got] == [(b'{"n":%d}' % n, p) for n, p in sent]
        # prev chains within the room, whatever the other room did in between.
        assert [d.prev for d in got] == [0] + [p.seq for _, p in sent[:-1]]
        assert all(d.exclude is None for d in got)


async def test_live_only_traffic_and_bad_positions_are_delivered_without_position(
    kit: Kit,
) -> None:
    backend, sink = await kit.backend()
    await backend.broker.subscribe("lobby")
    await backend.broker.publish("lobby", b'{"live":1}', exclude="c-1")
    rogue = await kit.client()
    headers = {"Nats-Sequence": "not-a-number", "Nats-Msg-Id": "x", "Pachinko-Time": "1"}
    await rogue.publish("chat.lobby", b'{"rogue":1}', headers=headers)
    await flush_sent(rogue, BOUND_S)
    stored = await history_of(backend).append("lobby", b'{"durable":1}')

    await sink.wait_for(lambda: len(sink.delivered) == 3, "three messages")
    assert [(d.data, d.exclude, d.position) for d in sink.delivered] == [
        (b'{"live":1}', "c-1", None),
        (b'{"rogue":1}', None, None),
        (b'{"durable":1}', None, stored.position),
    ]


async def test_exclude_survives_storing_delivering_and_reading(kit: Kit) -> None:
    backend, sink = await kit.backend()
    await backend.broker.subscribe("lobby")
    history = history_of(backend)
    first = await history.append("lobby", b'{"n":1}', exclude="conn-7")
    second = await history.append("lobby", b'{"n":2}')

    await sink.wait_for(lambda: len(sink.delivered) == 2, "both messages")
    assert [d.exclude for d in sink.delivered] == ["conn-7", None]
    page = await history.latest("lobby", limit=10)
    assert [(m.position, m.data, m.exclude) for m in page.messages] == [
        (first.position, b'{"n":1}', "conn-7"),
        (second.position, b'{"n":2}', None),
    ]


async def test_a_key_resent_is_a_duplicate_in_its_room_only(kit: Kit) -> None:
    backend, sink = await kit.backend()
    for room in ("lobby", "other"):
        await backend.broker.subscribe(room)
    history = history_of(backend)

    first = await history.append("lobby", b'{"try":1}', key="k-1")
    again = await history.append("lobby", b'{"try":2}', key="k-1")
    elsewhere = await history.append("other", b'{"try":1}', key="k-1")
    marker = await history.append("lobby", b'{"marker":1}')

    assert not first.duplicate and again.duplicate
    assert again.position == first.position  # the original's seq, id and time
    assert not elsewhere.duplicate
    assert elsewhere.position.id != first.position.id
    assert elsewhere.position.seq > first.position.seq
    # The marker was stored after the resend: had the resend been delivered, it
    # would have arrived before the marker.
    await sink.wait_for(
        lambda: any(d.position == marker.position for d in sink.delivered), "the marker"
    )
    assert [d.data for d in sink.of("lobby")] == [b'{"try":1}', b'{"marker":1}']
    assert [d.data for d in sink.of("other")] == [b'{"try":1}']
    assert seqs(await history.latest("lobby", limit=10)) == [
        first.position.seq,
        marker.position.seq,
    ]


async def test_unkeyed_messages_are_not_deduplicated_and_have_distinct_ids(kit: Kit) -> None:
    history = await kit.history()
    other = await kit.history()
    same = b'{"same":1}'
    sent = [await h.append("room", same) for h in (history, history, other, other)]
    assert not any(a.duplicate for a in sent)
    ids = [a.position.id for a in sent]
    assert len(set(ids)) == 4, ids
    page = await history.latest("room", limit=10)
    assert [m.position for m in page.messages] == [a.position for a in sent]
    # JetStream keeps no dedup entry for them: only keyed messages carry Nats-Msg-Id.
    keyed = await history.append("room", b'{"keyed":1}', key="k-1")
    nc = await kit.client()
    js = nc.jetstream(timeout=BOUND_S)
    raw = [await js.get_msg(history.stream, a.position.seq, direct=True) for a in sent]
    assert all("Nats-Msg-Id" not in (m.headers or {}) for m in raw)
    raw_keyed = await js.get_msg(history.stream, keyed.position.seq, direct=True)
    assert (raw_keyed.headers or {}).get("Nats-Msg-Id") == keyed.position.id


async def test_legacy_ids_put_every_id_in_nats_msg_id_for_older_readers(kit: Kit) -> None:
    history = await kit.history(NatsHistoryConfig(legacy_ids=True))
    sent = [await history.append("room", b'{"same":1}') for _ in range(2)]
    assert not any(a.duplicate for a in sent)
    assert sent[0].position.id != sent[1].position.id
    js = (await kit.client()).jetstream(timeout=BOUND_S)
    for appended in sent:
        raw = await js.get_msg(history.stream, appended.position.seq, direct=True)
        headers = raw.headers or {}
        assert headers.get("Nats-Msg-Id") == appended.position.id
        assert "Pachinko-Id" not in headers
    page = await history.latest("room", limit=10)
    assert [m.position for m in page.messages] == [a.position for a in sent]


async def test_concurrent_appends_each_get_their_own_acknowledgement(kit: Kit) -> None:
    backend, sink = await kit.backend()
    await backend.broker.subscribe("room")
    history = history_of(backend)
    bodies = [b'{"n":%d}' % n for n in range(50)]
    appended = await asyncio.gather(*(history.append("room", body) for body in bodies))
    stored = {m.data: m.position for m in (await history.latest("room", limit=50)).messages}
    assert {body: a.position for body, a in zip(bodies, appended, strict=True)} == stored
    await sink.wait_for(lambda: len(sink.of("room")) == 50, "every republished copy")
    assert {d.data: d.position for d in sink.of("room")} == stored


async def test_a_refused_append_says_why(kit: Kit) -> None:
    history = await kit.history(NatsHistoryConfig(stream="SMALL"))
    nc = await kit.client()
    js = nc.jetstream(timeout=BOUND_S)
    config = await js.stream_info("SMALL")
    await js.update_stream(config.config.evolve(max_msg_size=16))
    with pytest.raises(BackendError, match="JetStream refused the message: .*size"):
        await history.append("room", b'{"text":"longer than sixteen bytes"}')
    await js.delete_stream("SMALL")
    with pytest.raises(BackendError, match="no JetStream stream stores chat._h"):
        await history.append("room", b"{}")
    assert history._acks == {}


async def test_an_unanswered_append_gives_up_in_time(kit: Kit) -> None:
    history = await kit.history(start=False)
    impostor = await kit.client()
    await impostor.subscribe("chat._h.*", cb=_ignore)
    await flush_sent(impostor, BOUND_S)
    history._request_timeout_s = 0.2
    started = time.monotonic()
    with pytest.raises(BackendError, match="did not acknowledge"):
        await history.append("room", b"{}")
    assert time.monotonic() - started < BOUND_S
    assert history._acks == {}


async def _answer_with(nc: Client, payload: bytes) -> None:
    async def respond(msg: Any) -> None:
        await nc.publish(msg.reply, payload)

    await nc.subscribe("chat._h.*", cb=respond)
    await flush_sent(nc, BOUND_S)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"not json", "did not acknowledge"),
        (b"[]", "did not acknowledge"),
        (b'{"stream":"CHAT_HISTORY","seq":0}', "did not acknowledge"),
        (b'{"error":{"code":503,"err_code":10077,"description":"no space"}}', "no space"),
    ],
)
async def test_an_answer_that_is_no_acknowledgement_is_an_error(
    kit: Kit, answer: bytes, error: str
) -> None:
    history = await kit.history(start=False)
    await _answer_with(await kit.client(), answer)
    with pytest.raises(BackendError, match=error):
        await history.append("room", b"{}")
    assert history._acks == {}


async def test_a_late_acknowledgement_answers_nobody(kit: Kit) -> None:
    history = await kit.history(start=False)
    impostor = await kit.client()
    held: list[Any] = []
    both_held = asyncio.Event()

    async def hold(msg: Any) -> None:
        held.append(msg)
        if len(held) == 2:
            both_held.set()

    await impostor.subscribe("chat._h.*", cb=hold)
    await flush_sent(impostor, BOUND_S)
    history._request_timeout_s = 0.2
    with pytest.raises(BackendError, match="did not acknowledge"):
        await history.append("room", b'{"first":1}')
    # The first one's acknowledgement comes now, while the second one waits.
    second = asyncio.ensure_future(history.append("room", b'{"second":1}'))
    async with asyncio.timeout(BOUND_S):
        await both_held.wait()
    await impostor.publish(held[0].reply, b'{"stream":"CHAT_HISTORY","seq":7}')
    await impostor.publish(held[1].reply, b'{"stream":"CHAT_HISTORY","seq":8}')
    appended = await second
    assert appended.position.seq == 8
    assert history._acks == {}


async def test_a_stopped_history_refuses_at_once(kit: Kit) -> None:
    history = await kit.history()
    await history.append("room", b"{}")
    await history.stop()
    with pytest.raises(BackendError, match="stopped"):
        await history.append("room", b"{}")
    with pytest.raises(BackendError, match="stopped"):
        await history.latest("room", limit=1)
    assert history._inbox_sub is None


async def test_stopping_answers_appends_still_waiting(kit: Kit) -> None:
    history = await kit.history(start=False)
    impostor = await kit.client()
    await impostor.subscribe("chat._h.*", cb=_ignore)
    await flush_sent(impostor, BOUND_S)
    waiting = asyncio.ensure_future(history.append("room", b"{}"))
    async with asyncio.timeout(BOUND_S):
        while not history._acks:
            await asyncio.sleep(0)
    await history.stop()
    with pytest.raises(BackendError, match="did not acknowledge"):
        async with asyncio.timeout(BOUND_S):
            await waiting


# -- reading ----------------------------------------------------------------------


async def test_reads_of_an_empty_room(kit: Kit) -> None:
    history = await kit.history()
    await history.append("elsewhere", b"{}")
    assert await history.latest("empty", limit=5) == Page([], False)
    assert await history.latest("empty", limit=5, before=100) == Page([], False)
    assert await history.after("empty", 0, limit=5) == Page([], False)
    assert not await history.has("empty", 1)
    assert await history.last_seq("empty") is None


async def test_last_seq_is_the_newest_of_its_room(kit: Kit) -> None:
    history = await kit.history()
    await history.append("a", b"{}")
    newest = await history.append("a", b"{}")
    await history.append("b", b"{}")
    assert await history.last_seq("a") == newest.position.seq


async def test_latest_after_and_has_read_one_room_among_others(kit: Kit) -> None:
    history = await kit.history()
    mine: list[Position] = []
    for n in range(5):
        await history.append("noise", b'{"noise":%d}' % n)
        mine.append((await history.append("room", b'{"n":%d}' % n)).position)
    s = [p.seq for p in mine]

    page = await history.latest("room", limit=2)
    assert (seqs(page), page.more) == (s[3:], True)
    assert [m.data for m in page.messages] == [b'{"n":3}', b'{"n":4}']
    assert [m.position for m in page.messages] == mine[3:]
    assert (await history.latest("room", limit=5)).more is False
    assert seqs(await history.latest("room", limit=50)) == s
    page = await history.latest("room", limit=2, before=s[3])
    assert (seqs(page), page.more) == (s[1:3], True)
    page = await history.latest("room", limit=2, before=s[2])
    assert (seqs(page), page.more) == (s[:2], False)
    page = await history.latest("room", limit=3, before=s[1] - 1)  # between two of them
    assert (seqs(page), page.more) == (s[:1], False)
    assert await history.latest("room", limit=3, before=s[0]) == Page([], False)

    page = await history.after("room", 0, limit=2)
    assert (seqs(page), page.more) == (s[:2], True)
    page = await history.after("room", s[2], limit=2)
    assert (seqs(page), page.more) == (s[3:], False)
    page = await history.after("room", s[3] - 1, limit=10)  # a seq of another room
    assert (seqs(page), page.more) == (s[3:], False)
    assert await history.after("room", s[4], limit=3) == Page([], False)

    assert await history.has("room", s[0]) and await history.has("room", s[4])
    assert not await history.has("room", s[0] - 1)  # a message of "noise"
    assert not await history.has("noise", s[0])
    assert not await history.has("room", 0)
    assert not await history.has("room", s[4] + 1000)
    with pytest.raises(ValueError):
        await history.latest("room", limit=0)


async def test_reads_match_a_model_however_rooms_interleave(kit: Kit) -> None:
    # Rooms of very different traffic, in bursts, with retention discarding the
    # oldest: latest's counted seek must find exactly the last N before any seq.
    per_room = 60
    history = await kit.history(NatsHistoryConfig(max_messages_per_room=per_room))
    rng = random.Random(1)
    rooms = {"busy": 30, "quiet": 3, "bursty": 0}  # weights outside bursts
    order: list[str] = []
    while len(order) < 500:
        if rng.random() < 0.05:
            order += ["bursty"] * rng.randint(5, 40)
        order += rng.choices(["busy", "quiet"], weights=[rooms["busy"], rooms["quiet"]])
    stored: dict[str, list[int]] = {room: [] for room in rooms}
    for start in range(0, len(order), 50):
        chunk = order[start : start + 50]
        results = await asyncio.gather(*(history.append(room, b"{}") for room in chunk))
        for room, result in zip(chunk, results, strict=True):
            stored[room].append(result.position.seq)
    last_seq = max(max(v) for v in stored.values())
    for room, all_seqs in stored.items():
        kept = sorted(all_seqs)[-per_room:]
        assert len(kept) == min(per_room, len(all_seqs))
        bounds = [None, 1, kept[0], kept[0] + 1, kept[-1], last_seq + 5, 10**12]
        bounds += rng.sample(range(1, last_seq + 1), 12)
        for limit in (1, 2, 7, 30, 59, 60, 100):
            for before in bounds:
                expected = [q for q in kept if before is None or q < before]
                page = await history.latest(room, limit=limit, before=before)
                assert (seqs(page), page.more) == (expected[-limit:], len(expected) > limit), (
                    room,
                    limit,
                    before,
                )
            for cursor in bounds:
                after = cursor or 0
                expected = [q for q in kept if q > after]
                page = await history.after(room, after, limit=limit)
                assert (seqs(page), page.more) == (expected[:limit], len(expected) > limit)


async def test_each_room_keeps_its_last_messages(kit: Kit) -> None:
    history = await kit.history(NatsHistoryConfig(max_messages_per_room=3))
    appended = [(await history.append("room", b'{"n":%d}' % n)).position.seq for n in range(5)]
    other = (await history.append("other", b"{}")).position.seq

    page = await history.latest("room", limit=10)
    assert (seqs(page), page.more) == (appended[2:], False)
    assert seqs(await history.after("room", 0, limit=10)) == appended[2:]
    assert [await history.has("room", q) for q in appended] == [False, False, True, True, True]
    assert await history.has("other", other)


async def test_messages_older_than_max_age_are_discarded(kit: Kit) -> None:
    history = await kit.history(NatsHistoryConfig(max_age_s=0.5, dedup_window_s=0.2))
    first = (await history.append("room", b'{"n":1}')).position.seq
    assert await history.has("room", first)
    deadline = time.monotonic() + BOUND_S
    while await history.has("room", first):
        assert time.monotonic() < deadline, "not discarded after max_age_s"
        await asyncio.sleep(0.05)  # JetStream's expiry timer: nothing to await
    assert await history.latest("room", limit=10) == Page([], False)
    # The room goes on: a new message is stored and read as usual.
    second = (await history.append("room", b'{"n":2}')).position.seq
    assert seqs(await history.latest("room", limit=10)) == [second]


# -- failures ---------------------------------------------------------------------


async def test_stored_messages_and_keys_survive_a_killed_server(kit: Kit) -> None:
    events = kit.cluster.connection_events()
    history = await kit.history(events=events)
    first = await history.append("room", b'{"n":1}', key="k-1")
    second = await history.append("room", b'{"n":2}')

    await kit.server.kill()  # SIGKILL: no chance to write anything more
    await kit.server.start()  # same port, same store
    await wait_connected(events)

    page = await history.latest("room", limit=10)
    assert [(m.position, m.data) for m in page.messages] == [
        (first.position, b'{"n":1}'),
        (second.position, b'{"n":2}'),
    ]
    # JetStream rebuilds its dedup window from the stored messages' ids.
    again = await history.append("room", b'{"n":1}', key="k-1")
    assert again.duplicate and again.position == first.position
    third = await history.append("room", b'{"n":3}')
    assert third.position.seq > second.position.seq


async def test_append_fails_at_once_while_disconnected_and_nothing_is_stored_later(
    kit: Kit,
) -> None:
    events = kit.cluster.connection_events()
    history = await kit.history(events=events)
    kept = await history.append("room", b'{"before":1}')

    await kit.server.stop()
    async with asyncio.timeout(BOUND_S):
        await events.disconnected.wait()
    started = time.monotonic()
    with pytest.raises(BackendError, match="not connected"):
        await history.append("room", b'{"during":1}', key="k-during")
    with pytest.raises(BackendError, match="not connected"):
        await history.append("room", b'{"during":2}')
    with pytest.raises(BackendError):
        await history.latest("room", limit=10)
    with pytest.raises(BackendError):
        await history.has("room", kept.position.seq)
    assert time.monotonic() - started < REQUEST_TIMEOUT_S / 4

    await kit.server.start()
    await wait_connected(events)
    # Acknowledged, so anything the client had buffered was handled before it.
    after = await history.append("room", b'{"after":1}')
    page = await history.latest("room", limit=10)
    assert [m.data for m in page.messages] == [b'{"before":1}', b'{"after":1}']
    assert seqs(page) == [kept.position.seq, after.position.seq]
    # The refused keyed message was never stored: its key is free.
    assert not (await history.append("room", b'{"during":1}', key="k-during")).duplicate


async def test_a_server_without_jetstream_is_a_clear_error(
    kit: Kit, pachinko_nats: Callable[..., Any]
) -> None:
    plain: NatsServer = await pachinko_nats(jetstream=False)
    nc = await nats.connect(plain.url)
    try:
        history = NatsHistory(nc, Subjects("chat"), "n", request_timeout_s=REQUEST_TIMEOUT_S)
        with pytest.raises(BackendError, match="JetStream is not enabled"):
            await history.start()
        with pytest.raises(BackendError, match="no JetStream stream"):
            await history.append("room", b"{}")
        with pytest.raises(BackendError, match="no JetStream stream"):
            await history.latest("room", limit=1)
        await history.stop()
    finally:
        await nc.close()


async def test_reads_are_bounded_when_nobody_answers(kit: Kit) -> None:
    # Someone answers for the stream, never with a reply: the read gives up in time.
    history = await kit.history(start=False)
    impostor = await kit.client()
    direct_get = f"$JS.API.DIRECT.GET.{history.stream}"
    for subject in (direct_get, f"{direct_get}.>"):
        await impostor.subscribe(subject, cb=_ignore)
    await flush_sent(impostor, BOUND_S)
    history._request_timeout_s = 0.2
    started = time.monotonic()
    with pytest.raises(BackendError, match="did not answer"):
        await history.latest("room", limit=5)
    with pytest.raises(BackendError, match="did not answer"):
        await history.after("room", 0, limit=5)
    with pytest.raises(BackendError, match="did not answer"):
        await history.has("room", 1)
    assert time.monotonic() - started < BOUND_S


async def _ignore(msg: Any) -> None:
    return None


# -- the stream -------------------------------------------------------------------


async def test_gateways_starting_together_share_one_stream(kit: Kit) -> None:
    histories = [await kit.history(start=False) for _ in range(3)]
    await asyncio.gather(*(h.start() for h in histories))
    await histories[0].start()  # again: nothing changes
    info = await kit.stream_info()
    assert info.config.subjects == ["chat._h.*"]
    assert info.config.max_msgs_per_subject == 1000
    assert info.config.allow_direct
    written = await histories[1].append("room", b"{}")
    assert seqs(await histories[2].latest("room", limit=1)) == [written.position.seq]


async def test_a_changed_configuration_updates_the_stream(kit: Kit) -> None:
    await kit.history(NatsHistoryConfig(max_messages_per_room=10))
    info = await kit.stream_info()
    assert info.config.max_msgs_per_subject == 10

    history = await kit.history(NatsHistoryConfig(max_messages_per_room=2, max_age_s=3600))
    info = await kit.stream_info()
    assert (info.config.max_msgs_per_subject, info.config.max_age) == (2, 3600)

    # An operator changed the retention by hand: the next start puts it back.
    js = (await kit.client()).jetstream(timeout=BOUND_S)
    await js.update_stream(info.config.evolve(max_age=600.0))
    await history.start()
    assert (await kit.stream_info()).config.max_age == 3600
    appended = [(await history.append("room", b"{}")).position.seq for _ in range(3)]
    assert seqs(await history.latest("room", limit=10)) == appended[1:]


async def test_a_configuration_jetstream_cannot_apply_is_a_clear_error(kit: Kit) -> None:
    await kit.history(NatsHistoryConfig(storage="file"))
    # A stream's storage cannot change, nor can one server hold three replicas.
    for config in (NatsHistoryConfig(storage="memory"), NatsHistoryConfig(replicas=3)):
        history = await kit.history(config, start=False)
        with pytest.raises(BackendError, match="JetStream refused the history stream"):
            await history.start()


async def test_the_backend_keeps_no_history_unless_configured(kit: Kit) -> None:
    backend = NatsBackend(servers=kit.server.url, presence=False)
    assert backend.history is None
    configured = NatsBackend(servers=kit.server.url, history=NatsHistoryConfig(stream="ROOMS"))
    assert isinstance(configured.history, NatsHistory)
    assert configured.history.stream == "ROOMS"


async def test_the_whole_store_is_bounded_in_bytes_oldest_first(kit: Kit) -> None:
    history = await kit.history(NatsHistoryConfig(max_bytes=16 * 1024))
    body = b'{"pad":"' + b"x" * 1000 + b'"}'
    seqs_a = [(await history.append("a", body)).position.seq for _ in range(10)]
    seqs_b = [(await history.append("b", body)).position.seq for _ in range(10)]
    kept_a = seqs(await history.latest("a", limit=100))
    kept_b = seqs(await history.latest("b", limit=100))
    # Every room together fits the bound; what went was the oldest, whatever its room.
    assert len(kept_a) + len(kept_b) < 20
    assert kept_b == seqs_b[-len(kept_b) :] and kept_b
    assert kept_a == seqs_a[len(seqs_a) - len(kept_a) :]
    assert not await history.has("a", seqs_a[0])
