"""Connection: one bounded outbound queue per socket, drained by one writer task."""

from __future__ import annotations

import asyncio
from typing import Any

import falcon.errors
import pytest
import structlog

from falcon_pachinko import CloseCode, Connection, ConnectionClosed, ConnectionLimits
from falcon_pachinko.testing import scaled

BOUND_S = scaled(0.5)
#: How long a send must stay blocked to count as "waiting" (a bounded negative check).
STILL_WAITING_S = scaled(0.01)

MakeConnection = Any  # conftest.make_connection: (**limits) -> (Connection, FakeSocket)


async def open_stalled(make_connection: MakeConnection, **limits: Any) -> tuple[Connection, Any]:
    """An accepted connection whose client stopped reading, with one frame in flight.

    The writer holds the frame ``"plug"`` in a stalled send, so the queue behind
    it is empty and fills exactly to the limits under test.
    """
    conn, sock = make_connection(**limits)
    sock.reading.clear()
    await conn.accept()
    assert conn.offer_text("plug")
    await sock.wait_for(lambda: sock.stalled == 1)
    return conn, sock


async def assert_still_waiting(task: asyncio.Task[Any]) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(STILL_WAITING_S):
            await asyncio.shield(task)


# -- ordering -----------------------------------------------------------------


async def test_handshake_sends_go_out_first_then_room_traffic_in_order(
    make_connection: MakeConnection,
) -> None:
    conn, sock = make_connection(subprotocols=("chat.v1",))
    await conn.send_text("early-1")
    assert conn.offer_text("room-1")
    await conn.send_data(b"early-2")
    assert conn.offer_text("room-2")
    assert sock.log == []  # nothing leaves before the handshake is accepted

    await conn.accept(subprotocol="chat.v1")
    await conn.send_media({"n": 3})
    assert conn.offer_text("room-3")

    await sock.wait_for(lambda: len(sock.frames) == 6)
    assert sock.log[0] == ("accept", "chat.v1")
    assert sock.frames == ["early-1", b"early-2", "room-1", "room-2", '{"n":3}', "room-3"]
    assert conn.subprotocols == ("chat.v1",)


# -- offer_text: never blocks, overflow closes --------------------------------


@pytest.mark.parametrize(
    ("limits", "texts", "overflows"),
    [
        pytest.param({"max_queue_messages": 3}, ["m"] * 3, False, id="messages-at-max"),
        pytest.param({"max_queue_messages": 3}, ["m"] * 4, True, id="messages-max+1"),
        pytest.param({"max_queue_bytes": 10}, ["12345", "12345"], False, id="bytes-at-max"),
        pytest.param({"max_queue_bytes": 10}, ["12345", "123456"], True, id="bytes-max+1"),
    ],
)
async def test_offer_text_on_a_full_queue_closes_as_slow_consumer(
    make_connection: MakeConnection,
    limits: dict[str, int],
    texts: list[str],
    overflows: bool,
) -> None:
    conn, sock = await open_stalled(make_connection, **limits)

    results = [conn.offer_text(text) for text in texts]

    assert results == [True] * (len(texts) - 1) + [not overflows]
    assert conn.closed is overflows
    if overflows:
        assert conn.close_code == CloseCode.SLOW_CONSUMER == 4001
        await sock.wait_for(lambda: bool(sock.closes))
        assert sock.closes == [(4001, "slow consumer")]
        assert sock.frames == []  # what was queued for the stuck client is dropped
        assert not conn.offer_text("late")
    else:
        sock.reading.set()
        await sock.wait_for(lambda: len(sock.frames) == 1 + len(texts))
        assert sock.frames == ["plug", *texts]
        assert sock.closes == []


async def test_a_stuck_connection_never_holds_up_a_fast_one(
    make_connection: MakeConnection,
) -> None:
    stuck, stuck_sock = await open_stalled(make_connection, max_queue_messages=4)
    fast, fast_sock = make_connection(max_queue_messages=4)
    await fast.accept()
    texts = [f"m{i}" for i in range(20)]

    for text in texts:
        # A broadcast: offer to every member, without awaiting anything.
        stuck.offer_text(text)
        fast.offer_text(text)
        await asyncio.sleep(0)  # let the fast writer drain, as a busy loop would

    await fast_sock.wait_for(lambda: len(fast_sock.frames) == len(texts))
    assert fast_sock.frames == texts
    assert not fast.closed
    assert stuck.close_code == CloseCode.SLOW_CONSUMER
    await stuck_sock.wait_for(lambda: bool(stuck_sock.closes))


# -- send_text: waits for space -------------------------------------------------


async def test_send_text_waits_while_the_queue_is_full_and_resumes(
    make_connection: MakeConnection,
) -> None:
    conn, sock = await open_stalled(make_connection, max_queue_messages=2)
    await conn.send_text("a")
    await conn.send_text("b")

    blocked = asyncio.create_task(conn.send_text("c"))
    await assert_still_waiting(blocked)
    assert not conn.closed  # waiting is not overflowing

    sock.reading.set()
    async with asyncio.timeout(BOUND_S):
        await blocked
    await sock.wait_for(lambda: len(sock.frames) == 4)
    assert sock.frames == ["plug", "a", "b", "c"]


async def test_send_text_of_a_frame_larger_than_the_byte_budget_does_not_hang(
    make_connection: MakeConnection,
) -> None:
    conn, sock = make_connection(max_queue_bytes=4)
    await conn.accept()

    async with asyncio.timeout(BOUND_S):
        await conn.send_text("12345")
    await sock.wait_for(lambda: sock.frames == ["12345"])


async def test_send_text_raises_once_closed(make_connection: MakeConnection) -> None:
    conn, _sock = make_connection()
    await conn.accept()
    await conn.close(4100, "bye")

    with pytest.raises(ConnectionClosed) as info:
        await conn.send_text("late")
    assert info.value.code == 4100
    assert isinstance(info.value, falcon.errors.WebSocketDisconnected)
    with pytest.raises(ConnectionClosed):
        await conn.send_data(b"late")
    with pytest.raises(ConnectionClosed):
        await conn.send_media({"late": True})


@pytest.mark.parametrize("how", ["close", "abort", "peer-closed", "send-failed"])
async def test_a_sender_waiting_for_space_is_released_when_the_connection_ends(
    make_connection: MakeConnection, how: str
) -> None:
    conn, sock = await open_stalled(make_connection, max_queue_messages=1)
    await conn.send_text("a")
    blocked = asyncio.create_task(conn.send_text("b"))
    await assert_still_waiting(blocked)

    if how == "close":
        await conn.close(4100)
    elif how == "abort":
        conn.abort(CloseCode.SLOW_CONSUMER)
    elif how == "peer-closed":
        conn.mark_closed(1001)
    else:
        # The client vanished: the stalled send fails, nothing will drain the queue.
        sock.send_error = falcon.errors.WebSocketDisconnected(1006)
        sock.reading.set()

    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(BOUND_S):
            await blocked
    assert conn.closed


# -- close ---------------------------------------------------------------------


async def test_close_flushes_queued_frames_before_the_close_frame(
    make_connection: MakeConnection,
) -> None:
    conn, sock = await open_stalled(make_connection)
    await conn.send_text("a")
    assert conn.offer_text("b")
    await conn.send_data(b"c")

    await conn.close(4100, "bye")
    assert conn.closed
    assert not conn.offer_text("after close")
    assert sock.closes == []  # still flushing

    sock.reading.set()
    async with asyncio.timeout(BOUND_S):
        await conn.finish()
    assert sock.log[1:] == [
        ("text", "plug"),
        ("text", "a"),
        ("text", "b"),
        ("data", b"c"),
        ("close", 4100, "bye"),
    ]


async def test_closing_during_the_handshake_sends_nothing(
    make_connection: MakeConnection,
) -> None:
    conn, sock = make_connection()
    await conn.send_text("welcome")
    assert conn.offer_text("room traffic")

    await conn.close(1008)
    async with asyncio.timeout(BOUND_S):
        await conn.finish()

    assert sock.log == []
    assert conn.closed
    assert conn.close_code == 1008


@pytest.mark.parametrize("accepted", [True, False], ids=["open", "handshake"])
async def test_close_is_idempotent(make_connection: MakeConnection, accepted: bool) -> None:
    conn, sock = make_connection()
    if accepted:
        await conn.accept()

    await conn.close(4100, "first")
    await conn.close(4200, "second")
    async with asyncio.timeout(BOUND_S):
        await conn.finish()
    await conn.close(4300, "third")

    assert conn.close_code == 4100
    assert sock.closes == ([(4100, "first")] if accepted else [])


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("x" * 123, "x" * 123, id="ascii-123-bytes-kept"),
        pytest.param("x" * 124, "x" * 123, id="ascii-124-bytes-cut"),
        pytest.param("é" * 70, "é" * 61, id="2-byte-chars-cut-on-boundary"),
        pytest.param("🙂" * 40, "🙂" * 30, id="4-byte-chars-cut-on-boundary"),
        pytest.param("x" + "€" * 41, "x" + "€" * 40, id="3-byte-chars-exact-fit"),
    ],
)
@pytest.mark.parametrize("via", ["close", "abort"])
async def test_close_reasons_are_truncated_to_123_bytes_on_a_character_boundary(
    make_connection: MakeConnection, via: str, reason: str | None, expected: str | None
) -> None:
    conn, sock = make_connection()
    await conn.accept()

    if via == "close":
        await conn.close(4100, reason)
    else:
        conn.abort(4100, reason)
    async with asyncio.timeout(BOUND_S):
        await conn.finish()

    assert sock.closes == [(4100, expected)]
    if expected is not None:
        assert len(expected.encode()) <= 123


# -- finish --------------------------------------------------------------------


@pytest.mark.parametrize("hang", ["send", "close", "abort-close"])
async def test_finish_is_bounded_by_close_timeout_when_the_socket_hangs(
    make_connection: MakeConnection, hang: str
) -> None:
    conn, sock = make_connection(close_timeout_s=0.01)
    await conn.accept()
    if hang == "send":
        sock.reading.clear()
        await conn.send_text("never read")
        await conn.close()
    elif hang == "close":
        sock.closing.clear()
        await conn.close()
    else:
        sock.closing.clear()
        conn.abort(1012)

    async with asyncio.timeout(BOUND_S):
        await conn.finish()
    assert conn.closed
    assert sock.closes == []


async def test_finish_after_the_peer_closed_does_not_wait_for_the_timeout(
    make_connection: MakeConnection,
) -> None:
    conn, sock = make_connection(close_timeout_s=60)
    await conn.accept()
    await conn.send_text("unsent")

    conn.mark_closed(1001)
    async with asyncio.timeout(BOUND_S):
        await conn.finish()

    assert conn.close_code == 1001
    assert sock.closes == []
    assert not conn.offer_text("late")


# -- limits --------------------------------------------------------------------


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param({"max_queue_messages": 0}, id="messages-zero"),
        pytest.param({"max_queue_messages": -1}, id="messages-negative"),
        pytest.param({"max_queue_bytes": 0}, id="bytes-zero"),
        pytest.param({"max_queue_bytes": -1}, id="bytes-negative"),
        pytest.param({"close_timeout_s": 0}, id="timeout-zero"),
        pytest.param({"close_timeout_s": -0.5}, id="timeout-negative"),
    ],
)
def test_connection_limits_reject_non_positive_values(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        ConnectionLimits(**limits)  # type: ignore[arg-type]


def test_connection_limits_accept_the_smallest_positive_values() -> None:
    limits = ConnectionLimits(max_queue_messages=1, max_queue_bytes=1, close_timeout_s=0.001)
    assert (limits.max_queue_messages, limits.max_queue_bytes) == (1, 1)


# -- defects: bytes, handshake overflow, writer failure ------------------------


@pytest.mark.parametrize(
    ("texts", "overflows"),
    [
        pytest.param(["é" * 5], False, id="10-bytes-of-2-byte-chars-at-max"),
        pytest.param(["é" * 5, "x"], True, id="11-bytes-max+1"),
        pytest.param(["€" * 2, "é" * 2], False, id="3-byte-chars-then-2-at-max"),
        pytest.param(["🙂" * 2, "xx"], False, id="4-byte-chars-at-max"),
        pytest.param(["🙂" * 3], True, id="12-bytes-in-3-characters"),
    ],
)
async def test_the_byte_limit_counts_utf8_bytes_not_characters(
    make_connection: MakeConnection, texts: list[str], overflows: bool
) -> None:
    conn, sock = await open_stalled(make_connection, max_queue_bytes=10)

    results = [conn.offer_text(text) for text in texts]

    assert results[-1] is not overflows
    assert conn.closed is overflows
    if overflows:
        assert conn.close_code == CloseCode.SLOW_CONSUMER


async def test_offer_bytes_counts_bytes_and_sends_text(make_connection: MakeConnection) -> None:
    conn, sock = await open_stalled(make_connection, max_queue_bytes=10)
    assert conn.offer_bytes("é".encode() * 5)
    sock.reading.set()
    await sock.wait_for(lambda: len(sock.frames) == 2)
    assert sock.log[-1] == ("text", "é" * 5)

    conn2, _ = await open_stalled(make_connection, max_queue_bytes=10)
    assert not conn2.offer_bytes("é".encode() * 5 + b"x")
    assert conn2.close_code == CloseCode.SLOW_CONSUMER


async def test_sends_during_the_handshake_beyond_the_queue_limit_fail_instead_of_hanging(
    make_connection: MakeConnection,
) -> None:
    conn, sock = make_connection(max_queue_messages=2)
    await conn.send_text("one")
    await conn.send_text("two")

    # Nothing drains the queue before the accept: waiting for space would never end.
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(BOUND_S):
            await conn.send_text("three")
    assert info.value.code == CloseCode.INTERNAL_ERROR
    assert conn.closed and conn.close_code == CloseCode.INTERNAL_ERROR
    async with asyncio.timeout(BOUND_S):
        await conn.finish()
    assert sock.frames == []


async def test_a_writer_that_dies_is_logged_and_closes_the_connection_with_1011(
    make_connection: MakeConnection,
) -> None:
    conn, sock = make_connection()
    await conn.accept()
    sock.send_error = RuntimeError("a bug below the writer")

    with structlog.testing.capture_logs() as logs:
        assert conn.offer_text("boom")
        await sock.wait_for(lambda: bool(sock.closes))

    assert conn.closed and conn.close_code == CloseCode.INTERNAL_ERROR
    assert sock.closes == [(1011, "internal error")]
    failure = next(e for e in logs if e["event"] == "pachinko.writer_failed")
    assert failure["log_level"] == "error" and failure["exc_info"] is True
    assert not conn.offer_text("late")
    async with asyncio.timeout(BOUND_S):
        await conn.finish()


# -- the receive loop's read bound ----------------------------------------------


async def test_a_read_in_progress_ends_when_a_close_that_cannot_go_out_begins(
    make_connection: MakeConnection,
) -> None:
    """A client that stopped reading never takes the close frame; the read the
    receive loop has pending must not wait for its answer for ever."""
    conn, sock = make_connection()
    await conn.accept()
    sock.closing.clear()  # the close frame cannot go out
    never = asyncio.Event()
    bound = conn.reading()

    async def read() -> None:
        async with bound:
            await never.wait()

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    assert not reader.done()
    conn.abort(CloseCode.SLOW_CONSUMER)
    async with asyncio.timeout(BOUND_S):
        with pytest.raises(TimeoutError):
            await reader
    assert bound.expired()
    sock.closing.set()


async def test_a_read_bound_taken_after_the_close_is_not_ended_again(
    make_connection: MakeConnection,
) -> None:
    conn, sock = make_connection()
    await conn.accept()
    conn.abort(CloseCode.SLOW_CONSUMER)
    await sock.wait_for(lambda: any(entry[0] == "close" for entry in sock.log))
    bound = conn.reading()
    async with bound:
        await asyncio.sleep(0)  # nothing ends it: the close already happened
    assert not bound.expired()
