"""The adapters' side of the limits: the deadline timer, rooms per connection,
connections per process, the on_connect timeout, the rate-limited hook.

Connections run over fake sockets or Falcon's in-memory WebSocket simulator; no
real sockets. Bounds are short because nothing here waits on a network.
"""

from __future__ import annotations

import asyncio
from typing import Any

import falcon.asgi
import falcon.errors
import falcon.testing
import pytest
import structlog

import falcon_pachinko
from falcon_pachinko import (
    CloseCode,
    Connection,
    ConnectionLimits,
    RoomLimitExceeded,
    WebSocketConnectionManager,
    WebSocketLike,
    WebSocketResource,
    handles_message,
)
from falcon_pachinko.testing import scaled

BOUND_S = scaled(1.0)
MakeConnection = Any  # conftest.make_connection


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


# -- the deadline timer -------------------------------------------------------------


async def test_one_timer_is_armed_for_the_deadline_and_fires_a_4002(make_socket: Any) -> None:
    clock = FakeClock()
    sock = make_socket()
    conn = Connection(sock, ConnectionLimits(), clock=clock)
    await conn.accept()
    loop = asyncio.get_running_loop()

    conn.close_after(30, reason="token expired")
    first = conn._timer
    assert first is not None and first.when() == pytest.approx(loop.time() + 30, abs=0.5)
    conn.close_after(60, reason="token expired")  # replaces: still one timer
    assert first.cancelled() and conn._timer is not None and conn._timer is not first

    clock.now += 60
    conn._on_deadline()  # what the loop does at the deadline, without waiting for it
    await sock.wait_for(lambda: bool(sock.closes), BOUND_S)
    assert sock.closes == [(CloseCode.CREDENTIALS_EXPIRED, "token expired")]
    assert conn._timer is None
    await conn.finish()


async def test_a_deadline_closes_on_time_over_the_real_loop(make_socket: Any) -> None:
    sock = make_socket()
    conn = Connection(sock, ConnectionLimits())
    await conn.accept()
    conn.close_after(0.01, 4100, "lifetime")
    await sock.wait_for(lambda: bool(sock.closes), BOUND_S)
    assert sock.closes == [(4100, "lifetime")]
    await conn.finish()


async def test_a_deadline_set_during_the_handshake_is_kept_by_the_accept(
    make_socket: Any,
) -> None:
    clock = FakeClock()
    sock = make_socket()
    conn = Connection(sock, ConnectionLimits(), clock=clock)
    conn.close_after(-1, reason="token expired")  # already past, before the accept
    assert conn._timer is None and not conn.closed  # nothing armed before the accept
    await conn.send_media({"type": "welcome"})
    await conn.accept()
    await sock.wait_for(lambda: bool(sock.closes), BOUND_S)
    assert sock.frames == ['{"type":"welcome"}']
    assert sock.closes == [(CloseCode.CREDENTIALS_EXPIRED, "token expired")]
    await conn.finish()


async def test_finish_cancels_the_timer(make_socket: Any) -> None:
    conn = Connection(make_socket(), ConnectionLimits())
    await conn.accept()
    conn.close_after(3600)
    timer = conn._timer
    conn.mark_closed(1000)
    await conn.finish()
    assert timer is not None and timer.cancelled()


# -- rooms per connection -----------------------------------------------------------


@pytest.mark.parametrize(
    ("rooms", "refused"),
    [
        pytest.param(3, False, id="max-rooms-joined"),
        pytest.param(4, True, id="max-plus-one-refused"),
    ],
)
async def test_joining_more_than_max_rooms_raises_and_changes_nothing(
    make_connection: MakeConnection, rooms: int, refused: bool
) -> None:
    manager = WebSocketConnectionManager(limits=ConnectionLimits(max_rooms=3))
    await manager.start()
    conn, _ = make_connection()
    manager.register(conn)
    names = [f"r{i}" for i in range(rooms)]
    for name in names[:-1]:
        await manager.join_room(conn, name)
    if refused:
        with pytest.raises(RoomLimitExceeded) as caught:
            await manager.join_room(conn, names[-1])
        assert isinstance(caught.value, ValueError) and caught.value.limit == 3
        assert manager.rooms_of(conn) == frozenset(names[:-1])
        assert manager.local_rooms() == sorted(names[:-1])
        await manager.join_room(conn, names[0])  # a room it is in: still a no-op
    else:
        await manager.join_room(conn, names[-1])
        assert manager.rooms_of(conn) == frozenset(names)
    await manager.unregister(conn)
    assert manager.local_rooms() == []
    await manager.stop()


async def test_concurrent_joins_never_exceed_max_rooms(make_connection: MakeConnection) -> None:
    manager = WebSocketConnectionManager(limits=ConnectionLimits(max_rooms=2))
    await manager.start()
    conn, _ = make_connection()
    manager.register(conn)
    results = await asyncio.gather(
        *(manager.join_room(conn, f"r{i}") for i in range(5)), return_exceptions=True
    )
    assert sum(isinstance(r, RoomLimitExceeded) for r in results) == 3
    assert len(manager.rooms_of(conn)) == 2
    assert manager.local_rooms() == sorted(manager.rooms_of(conn))
    await manager.stop()


# -- routing: rate limits, a full process, on_connect timeouts ----------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.built = 0


class Limited(WebSocketResource):
    def __init__(self, recorder: Recorder) -> None:
        recorder.built += 1
        self.recorder = recorder

    async def on_connect(self, req: Any, ws: WebSocketLike, mode: str) -> bool:
        await self.join_room("lobby")
        if mode == "hang":
            await asyncio.Event().wait()
        return True

    @handles_message("echo")
    async def echo(self, ws: WebSocketLike, payload: Any) -> None:
        self.recorder.events.append(("echo",))
        await ws.send_media({"type": "echoed"})

    async def on_rate_limited(self, ws: WebSocketLike, message: str | bytes) -> None:
        self.recorder.events.append(("rate_limited", message))
        await ws.send_media({"type": "slow down"})

    async def on_disconnect(self, ws: WebSocketLike, close_code: int) -> None:
        self.recorder.events.append(("disconnect", close_code))


def limited_app(
    recorder: Recorder, max_connections: int | None = None, **limits: Any
) -> falcon.asgi.App[Any, Any]:
    app: falcon.asgi.App[Any, Any] = falcon.asgi.App()
    falcon_pachinko.install(app, limits=ConnectionLimits(**limits), max_connections=max_connections)
    app.add_websocket_route("/ws/{mode}", Limited, recorder)  # type: ignore[attr-defined]
    return app


def manager_of(app: falcon.asgi.App[Any, Any]) -> WebSocketConnectionManager:
    return app.ws_connection_manager  # type: ignore[attr-defined,no-any-return]


async def test_frames_over_budget_go_to_on_rate_limited_and_a_flood_closes_1008() -> None:
    recorder = Recorder()
    app = limited_app(recorder, rate_per_s=0.001, rate_burst=2)
    async with (
        falcon.testing.ASGIConductor(app) as conductor,
        conductor.simulate_ws("/ws/ok") as ws,
    ):
        for _ in range(5):  # 2 dispatched, 2 refused, the 5th refusal closes
            await ws.send_json({"type": "echo"})
        replies = [(await ws.receive_json())["type"] for _ in range(4)]
        assert replies == ["echoed", "echoed", "slow down", "slow down"]
        with pytest.raises(falcon.errors.WebSocketDisconnected):
            await ws.receive_json()
        assert ws.close_code == CloseCode.POLICY_VIOLATION
    kinds = [event[0] for event in recorder.events]
    assert kinds == ["echo", "echo", "rate_limited", "rate_limited", "rate_limited", "disconnect"]
    assert recorder.events[-1] == ("disconnect", CloseCode.POLICY_VIOLATION)
    stats = manager_of(app).stats
    assert (stats.frames_rate_limited, stats.rate_limit_closes) == (3, 1)


@pytest.mark.parametrize(
    ("connections", "refused"),
    [
        pytest.param(2, False, id="max-connections-served"),
        pytest.param(3, True, id="max-plus-one-refused-before-the-resource"),
    ],
)
async def test_a_full_process_refuses_before_building_a_resource(
    connections: int, refused: bool
) -> None:
    recorder = Recorder()
    app = limited_app(recorder, max_connections=2)
    async with falcon.testing.ASGIConductor(app) as conductor:
        first = conductor.simulate_ws("/ws/ok")
        second = conductor.simulate_ws("/ws/ok")
        async with first, second:
            if connections == 3:
                # Falcon's simulator lacks the HTTP-response extension: the
                # refusal shows as a denied handshake (3403); uvicorn sends 503.
                with pytest.raises(falcon.errors.WebSocketDisconnected):
                    async with conductor.simulate_ws("/ws/ok"):
                        pass
            assert recorder.built == 2
            assert manager_of(app).connection_count == 2
        async with conductor.simulate_ws("/ws/ok") as again:  # places free again
            await again.send_json({"type": "echo"})
            assert (await again.receive_json())["type"] == "echoed"
    assert manager_of(app).stats.refused_full == (1 if refused else 0)


async def test_an_on_connect_that_hangs_is_cancelled_refused_and_leaves_its_rooms() -> None:
    recorder = Recorder()
    app = limited_app(recorder, connect_timeout_s=0.02)
    with structlog.testing.capture_logs() as logs:
        async with falcon.testing.ASGIConductor(app) as conductor:
            with pytest.raises(falcon.errors.WebSocketDisconnected):
                async with asyncio.timeout(BOUND_S), conductor.simulate_ws("/ws/hang"):
                    pass
    manager = manager_of(app)
    assert recorder.events == []  # on_disconnect never ran: it never connected
    assert manager.local_rooms() == [] and manager.connection_count == 0
    assert manager.stats.connect_timeouts == 1
    timeouts = [e for e in logs if e["event"] == "pachinko.on_connect_timeout"]
    assert len(timeouts) == 1 and timeouts[0]["timeout_s"] == 0.02


async def test_on_connects_own_timeout_error_is_a_failure_not_a_connect_timeout() -> None:
    class Raises(WebSocketResource):
        async def on_connect(self, req: Any, ws: WebSocketLike) -> bool:
            raise TimeoutError("its own")

    app: falcon.asgi.App[Any, Any] = falcon.asgi.App()
    falcon_pachinko.install(app)
    app.add_websocket_route("/ws", Raises)  # type: ignore[attr-defined]
    with structlog.testing.capture_logs() as logs:
        async with falcon.testing.ASGIConductor(app) as conductor:
            with pytest.raises(falcon.errors.WebSocketDisconnected) as denied:
                async with conductor.simulate_ws("/ws"):
                    pass
    assert denied.value.code == 3403
    assert [e["event"] for e in logs if e["event"].startswith("pachinko.on_connect")] == [
        "pachinko.on_connect_failed"
    ]
    assert manager_of(app).stats.connect_timeouts == 0


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param({"max_rooms": 0}, id="no-rooms"),
        pytest.param({"connect_timeout_s": 0}, id="zero-connect-timeout"),
        pytest.param({"rate_per_s": -1}, id="negative-rate"),
        pytest.param({"rate_burst": 0}, id="zero-burst"),
    ],
)
def test_bad_limits_are_refused(limits: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ConnectionLimits(**limits)


def test_max_connections_zero_or_none_is_unlimited() -> None:
    assert WebSocketConnectionManager(max_connections=0).max_connections is None
    assert not WebSocketConnectionManager(max_connections=None).full
    with pytest.raises(ValueError):
        WebSocketConnectionManager(max_connections=-1)
