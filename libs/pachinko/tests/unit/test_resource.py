"""WebSocketResource lifecycle over Falcon's in-memory WebSocket simulator."""

from __future__ import annotations

import asyncio
from typing import Any

import falcon
import falcon.asgi
import falcon.errors
import falcon.testing
import msgspec
import pytest
import structlog

import falcon_pachinko
from falcon_pachinko import WebSocketLike, WebSocketResource, handles_message
from falcon_pachinko.testing import scaled

BOUND_S = scaled(2.0)


class Recorder:
    """Collects what resources report, shared through the route's constructor args."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []


class Room(WebSocketResource):
    def __init__(self, recorder: Recorder, *, greeting: str = "hi") -> None:
        self.recorder = recorder
        self.greeting = greeting

    async def on_connect(self, req: Any, ws: WebSocketLike, name: str) -> bool:
        self.recorder.events.append(("connect", name))
        if req.get_param("deny"):
            await ws.send_media({"type": "never-sent"})
            return False
        await self.join_room(name)
        # Room traffic that arrives during the handshake must queue behind the
        # direct sends below.
        await self.broadcast_to_room(name, {"type": "roomTraffic"})
        await ws.send_media({"type": "welcome", "payload": {"text": self.greeting}})
        await ws.send_media({"type": "welcome2"})
        return True

    @handles_message("echo")
    async def echo(self, ws: WebSocketLike, payload: dict) -> None:  # type: ignore[type-arg]
        await ws.send_media({"type": "echoed", "payload": payload})

    @handles_message("explode")
    async def explode(self, ws: WebSocketLike, payload: dict) -> None:  # type: ignore[type-arg]
        raise RuntimeError("handler bug")

    @handles_message("bye")
    async def bye(self, ws: WebSocketLike, payload: dict) -> None:  # type: ignore[type-arg]
        await ws.send_media({"type": "farewell"})
        await ws.close(4100, "bye")

    async def on_handler_error(
        self, ws: WebSocketLike, message_type: str, error: Exception
    ) -> None:
        await ws.send_media({"type": "error", "payload": {"for": message_type}})

    async def on_unhandled(self, ws: WebSocketLike, message: str | bytes) -> None:
        self.recorder.events.append(("unhandled", message))
        await ws.send_media({"type": "unhandled"})

    async def on_disconnect(self, ws: WebSocketLike, close_code: int) -> None:
        self.recorder.events.append(("disconnect", close_code))
        if self.recorder.events[0] == ("connect", "raise-on-disconnect"):
            raise RuntimeError("disconnect hook bug")


def make_app(recorder: Recorder) -> falcon.asgi.App:
    app = falcon.asgi.App()
    falcon_pachinko.install(app)
    app.add_websocket_route("/ws/{name}", Room, recorder, greeting="hello")  # type: ignore[attr-defined]
    return app


async def test_direct_sends_in_on_connect_arrive_first_and_in_order() -> None:
    recorder = Recorder()
    async with falcon.testing.ASGIConductor(make_app(recorder)) as conductor:
        async with conductor.simulate_ws("/ws/lobby") as ws:
            assert await ws.receive_json() == {"type": "welcome", "payload": {"text": "hello"}}
            assert await ws.receive_json() == {"type": "welcome2"}
            assert await ws.receive_json() == {"type": "roomTraffic"}
    assert recorder.events == [("connect", "lobby"), ("disconnect", 1000)]


async def test_on_connect_false_rejects_and_sends_nothing() -> None:
    recorder = Recorder()
    app = make_app(recorder)
    async with falcon.testing.ASGIConductor(app) as conductor:
        # Falcon's simulator reports a denied handshake as close code 3403 (HTTP 403).
        with pytest.raises(falcon.errors.WebSocketDisconnected) as denied:
            async with conductor.simulate_ws("/ws/lobby", query_string="deny=1"):
                pass
        assert denied.value.code == 3403
    assert recorder.events == [("connect", "lobby")]  # no on_disconnect for a rejected one
    assert app.ws_connection_manager.local_rooms() == []  # type: ignore[attr-defined]


async def test_handler_exception_is_logged_and_the_connection_stays_open() -> None:
    recorder = Recorder()
    async with falcon.testing.ASGIConductor(make_app(recorder)) as conductor:
        async with conductor.simulate_ws("/ws/lobby") as ws:
            for _ in range(3):
                await ws.receive_json()
            with structlog.testing.capture_logs() as logs:
                await ws.send_json({"type": "explode"})
                assert await ws.receive_json() == {"type": "error", "payload": {"for": "explode"}}
            await ws.send_json({"type": "echo", "payload": {"still": "here"}})
            assert await ws.receive_json() == {"type": "echoed", "payload": {"still": "here"}}
    failure = next(e for e in logs if e["event"] == "pachinko.handler_failed")
    assert failure["message_type"] == "explode" and failure["exc_info"] is True


async def test_unhandled_frames_reach_on_unhandled_raw() -> None:
    recorder = Recorder()
    async with falcon.testing.ASGIConductor(make_app(recorder)) as conductor:
        async with conductor.simulate_ws("/ws/lobby") as ws:
            for _ in range(3):
                await ws.receive_json()
            await ws.send_text("not json")
            await ws.send_data(b"\x00\x01")
            await ws.send_json({"type": "nobody-handles-this"})
            for _ in range(3):
                assert await ws.receive_json() == {"type": "unhandled"}
    unhandled = [e[1] for e in recorder.events if e[0] == "unhandled"]
    assert unhandled == ["not json", b"\x00\x01", '{"type": "nobody-handles-this"}']


async def test_server_close_flushes_queue_and_calls_on_disconnect_once() -> None:
    recorder = Recorder()
    async with falcon.testing.ASGIConductor(make_app(recorder)) as conductor:
        async with conductor.simulate_ws("/ws/lobby") as ws:
            for _ in range(3):
                await ws.receive_json()
            await ws.send_json({"type": "bye"})
            assert await ws.receive_json() == {"type": "farewell"}
            with pytest.raises(falcon.errors.WebSocketDisconnected):
                await ws.receive_json()
            assert ws.close_code == 4100
    assert recorder.events.count(("disconnect", 4100)) == 1
    assert [e for e in recorder.events if e[0] == "disconnect"] == [("disconnect", 4100)]


async def test_rooms_are_left_even_if_on_disconnect_raises() -> None:
    recorder = Recorder()
    app = make_app(recorder)
    manager = app.ws_connection_manager  # type: ignore[attr-defined]
    async with falcon.testing.ASGIConductor(app) as conductor:
        with structlog.testing.capture_logs() as logs:
            async with conductor.simulate_ws("/ws/raise-on-disconnect") as ws:
                await ws.receive_json()
                assert await manager.get_rooms_by_prefix("") == ["raise-on-disconnect"]
    assert any(e["event"] == "pachinko.hook_failed" and e["hook"] == "on_disconnect" for e in logs)
    assert await manager.get_rooms_by_prefix("") == []
    assert manager.local_rooms() == []


# -- on_disconnect however the connection ends ------------------------------------


class Exploding(msgspec.Struct, frozen=True):
    """A payload type whose own code fails while it is decoded (a programmer error)."""

    n: int

    def __post_init__(self) -> None:
        raise RuntimeError("a bug in a payload's __post_init__")


class Lifecycle(WebSocketResource):
    """Joins ``lobby``, records hooks; ``?flood=N`` broadcasts N frames in on_connect."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def on_connect(self, req: Any, ws: WebSocketLike) -> bool:
        await self.join_room("lobby")
        for _ in range(req.get_param_as_int("flood") or 0):
            await self.broadcast_to_room("lobby", {"type": "flood"})
        return True

    @handles_message("decodeBug")
    async def decode_bug(self, ws: WebSocketLike, payload: Exploding) -> None: ...

    @handles_message("echo")
    async def echo(self, ws: WebSocketLike, payload: dict) -> None:  # type: ignore[type-arg]
        await ws.send_media({"type": "echoed"})

    async def on_unhandled(self, ws: WebSocketLike, message: str | bytes) -> None:
        await ws.send_media({"type": "unhandled"})

    async def on_disconnect(self, ws: WebSocketLike, close_code: int) -> None:
        self.recorder.events.append(("disconnect", close_code))


def lifecycle_app(
    recorder: Recorder, limits: falcon_pachinko.ConnectionLimits | None = None
) -> falcon.asgi.App:
    app = falcon.asgi.App()
    falcon_pachinko.install(app, limits=limits)
    app.add_websocket_route("/ws", Lifecycle, recorder)  # type: ignore[attr-defined]
    return app


async def test_a_frame_nested_1000_deep_is_unhandled_and_the_connection_stays_open() -> None:
    recorder = Recorder()
    frame = '{"type":"clientSendMessage","payload":' + "[" * 1000 + "]" * 1000 + "}"
    assert len(frame) < 2100
    async with falcon.testing.ASGIConductor(lifecycle_app(recorder)) as conductor:
        async with conductor.simulate_ws("/ws") as ws:
            await ws.send_text(frame)
            assert await ws.receive_json() == {"type": "unhandled"}
            await ws.send_text(frame.replace("clientSendMessage", "echo"))
            assert await ws.receive_json() == {"type": "unhandled"}
            await ws.send_json({"type": "echo"})
            assert await ws.receive_json() == {"type": "echoed"}
    assert recorder.events == [("disconnect", 1000)]


async def test_a_decoder_that_raises_closes_with_1011_and_still_runs_on_disconnect() -> None:
    recorder = Recorder()
    app = lifecycle_app(recorder)
    async with falcon.testing.ASGIConductor(app) as conductor:
        with structlog.testing.capture_logs() as logs:
            async with conductor.simulate_ws("/ws") as ws:
                await ws.send_json({"type": "decodeBug", "payload": {"n": 1}})
                async with asyncio.timeout(BOUND_S):
                    with pytest.raises(falcon.errors.WebSocketDisconnected):
                        await ws.receive_json()
                assert ws.close_code == 1011
    assert recorder.events == [("disconnect", 1011)]
    assert app.ws_connection_manager.local_rooms() == []  # type: ignore[attr-defined]
    failure = next(e for e in logs if e["event"] == "pachinko.connection_failed")
    assert failure["exc_info"] is True


async def test_a_writer_that_dies_closes_with_1011_and_still_runs_on_disconnect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder()
    app = lifecycle_app(recorder)

    async def broken_send_text(self: Any, payload: str) -> None:
        raise RuntimeError("a bug below the writer")

    async with falcon.testing.ASGIConductor(app) as conductor:
        with structlog.testing.capture_logs() as logs:
            async with conductor.simulate_ws("/ws") as ws:
                monkeypatch.setattr(falcon.asgi.WebSocket, "send_text", broken_send_text)
                await ws.send_json({"type": "echo"})
                async with asyncio.timeout(BOUND_S):
                    with pytest.raises(falcon.errors.WebSocketDisconnected):
                        await ws.receive_json()
                assert ws.close_code == 1011
    assert recorder.events == [("disconnect", 1011)]
    assert app.ws_connection_manager.local_rooms() == []  # type: ignore[attr-defined]
    assert any(e["event"] == "pachinko.writer_failed" for e in logs)


async def test_a_connection_closed_after_on_connect_accepted_still_gets_on_disconnect() -> None:
    recorder = Recorder()
    limits = falcon_pachinko.ConnectionLimits(max_queue_messages=4)
    app = lifecycle_app(recorder, limits)
    async with falcon.testing.ASGIConductor(app) as conductor:
        # on_connect joins, then its own room floods the queue before the accept.
        with pytest.raises(falcon.errors.WebSocketDisconnected):
            async with asyncio.timeout(BOUND_S):
                async with conductor.simulate_ws("/ws", query_string="flood=5"):
                    pass
    assert recorder.events == [("disconnect", 4001)]  # the join is matched by a leave
    assert app.ws_connection_manager.local_rooms() == []  # type: ignore[attr-defined]


class DurableRoom(WebSocketResource):
    async def on_connect(self, req: Any, ws: WebSocketLike) -> bool:
        await self.join_room("r", history=10)
        return True

    @handles_message("say")
    async def say(self, ws: WebSocketLike, payload: dict) -> None:  # type: ignore[type-arg]
        await self.broadcast_to_room("r", {"type": "said"}, exclude_self=True, persist=True)
        await ws.send_media({"type": "stored"})

    @handles_message("older")
    async def older(self, ws: WebSocketLike, payload: dict) -> None:  # type: ignore[type-arg]
        await self.send_history("r", limit=10)


async def test_scroll_back_leaves_out_what_the_connection_was_excluded_from() -> None:
    app = falcon.asgi.App()
    falcon_pachinko.install(app)
    app.add_websocket_route("/durable", DurableRoom)  # type: ignore[attr-defined]
    async with falcon.testing.ASGIConductor(app) as conductor:
        async with conductor.simulate_ws("/durable") as sender:
            await sender.receive_json()  # the (empty) join history
            await sender.send_json({"type": "say", "payload": {}})
            assert (await sender.receive_json())["type"] == "stored"
            await sender.send_json({"type": "older", "payload": {}})
            mine = await asyncio.wait_for(sender.receive_json(), BOUND_S)
            async with conductor.simulate_ws("/durable") as other:
                joined = await asyncio.wait_for(other.receive_json(), BOUND_S)
                await other.send_json({"type": "older", "payload": {}})
                theirs = await asyncio.wait_for(other.receive_json(), BOUND_S)
    assert mine["type"] == "history" and mine["messages"] == []
    assert [m["type"] for m in joined["messages"]] == ["said"]
    assert [m["type"] for m in theirs["messages"]] == ["said"]


class Raw(WebSocketResource):
    """Hands its connection's Falcon ``WebSocket`` to the test."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def on_connect(self, req: Any, ws: WebSocketLike) -> bool:
        self.recorder.events.append(("raw", ws.raw))  # type: ignore[attr-defined]
        return True

    async def on_disconnect(self, ws: WebSocketLike, close_code: int) -> None:
        self.recorder.events.append(("disconnect", close_code))


async def test_an_accepted_connection_reads_with_no_receive_task_of_falcons() -> None:
    recorder = Recorder()
    app = falcon.asgi.App()
    falcon_pachinko.install(app)
    app.add_websocket_route("/ws", Raw, recorder)  # type: ignore[attr-defined]
    async with falcon.testing.ASGIConductor(app) as conductor:
        async with conductor.simulate_ws("/ws") as ws:
            await ws.send_json({"type": "anything"})  # read and handled: the loop runs
            raw = recorder.events[0][1]
            assert raw._buffered_receiver._pump_task is None
            assert raw._buffered_receiver._messages.maxlen == 0  # one shared, empty
            await ws.close(4100)
        async with asyncio.timeout(BOUND_S):
            while len(recorder.events) < 2:
                await asyncio.sleep(0.01)
    # A disconnect is still seen at once, with its code; the app's option is untouched.
    assert recorder.events[1] == ("disconnect", 4100)
    assert app.ws_options.max_receive_queue > 0


class Context(WebSocketResource):
    """Records the structlog context its hooks and handlers run in."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def on_connect(self, req: Any, ws: WebSocketLike) -> bool:
        self.recorder.events.append(("connect", structlog.contextvars.get_contextvars()))
        return True

    @handles_message("echo")
    async def echo(self, ws: WebSocketLike, payload: Any) -> None:
        self.recorder.events.append(("echo", structlog.contextvars.get_contextvars()))
        await ws.send_media({"type": "echoed"})

    async def on_disconnect(self, ws: WebSocketLike, close_code: int) -> None:
        self.recorder.events.append(("disconnect", structlog.contextvars.get_contextvars()))


async def test_hooks_and_handlers_log_with_the_connection_id_and_resource() -> None:
    recorder = Recorder()
    app = falcon.asgi.App()
    falcon_pachinko.install(app)
    app.add_websocket_route("/ws", Context, recorder)  # type: ignore[attr-defined]
    async with falcon.testing.ASGIConductor(app) as conductor:
        async with conductor.simulate_ws("/ws") as ws:
            await ws.send_json({"type": "echo"})
            assert await ws.receive_json() == {"type": "echoed"}
    assert [e[0] for e in recorder.events] == ["connect", "echo", "disconnect"]
    ids = {e[1]["connection_id"] for e in recorder.events}
    assert len(ids) == 1 and all(e[1]["resource"] == "Context" for e in recorder.events)
    assert "connection_id" not in structlog.contextvars.get_contextvars()
