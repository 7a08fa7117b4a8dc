"""The single-process chat over real uvicorn and real WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections import defaultdict
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry
from websockets.exceptions import ConnectionClosed

from chat_gateway.app import create_app
from chat_gateway.server import uvicorn_options
from chat_gateway.settings import load_settings
from chat_protocol.messages import MAX_TEXT_CHARS
from falcon_pachinko import Appended, Backend, BackendError
from falcon_pachinko.backends import InProcessBroker, InProcessHistory, InProcessPresence
from falcon_pachinko.testing import (
    LiveServer,
    WSClient,
    connect,
    handshake_status,
    scaled,
    serve,
)

from .conftest import StartGateway

pytestmark = pytest.mark.integration


def chat_url(server: LiveServer, room: str, user: str | None = None) -> str:
    query = {"user": user} if user is not None else {}
    return server.ws_url(f"/ws/chat/{room}", query)


def send_message(text: str) -> dict[str, Any]:
    return {"type": "clientSendMessage", "payload": {"text": text}}


async def test_the_seed_scenario(start_gateway: StartGateway) -> None:
    server = await start_gateway()
    async with connect(chat_url(server, "general", "Alice")) as alice:
        assert await alice.receive() == {
            "type": "serverSystemMessage",
            "payload": {"text": "Welcome Alice to room 'general'!"},
        }
        assert await alice.receive() == {"type": "serverPresence", "payload": {"users": ["Alice"]}}
        empty = {"type": "serverHistory", "payload": {"messages": [], "complete": True}}
        assert await alice.receive() == empty
        async with connect(chat_url(server, "general", "Bob")) as bob:
            assert (await bob.receive())["type"] == "serverSystemMessage"
            roster = {"type": "serverPresence", "payload": {"users": ["Alice", "Bob"]}}
            assert await bob.receive() == roster
            assert await bob.receive() == empty
            assert await alice.receive() == {"type": "serverUserJoined", "payload": {"user": "Bob"}}

            await alice.send_json(send_message("Hello everyone!"))
            received = await alice.receive()
            assert await bob.receive() == received
            assert received["type"] == "serverNewMessage"
            payload = received["payload"]
            assert {"user": "Alice", "text": "Hello everyone!"}.items() <= payload.items()
            assert isinstance(payload["id"], str) and payload["seq"] >= 1
            assert abs(payload["ts"] - time.time() * 1000) < 60_000

            await alice.send_json({"type": "clientStartTyping"})
            await alice.send_json({"type": "clientStopTyping", "payload": {}})
            for is_typing in (True, False):
                assert await bob.receive() == {
                    "type": "serverUserTyping",
                    "payload": {"user": "Alice", "isTyping": is_typing},
                }
        # Alice's typing was not echoed to her: the next thing she sees is Bob leaving.
        assert await alice.receive() == {"type": "serverUserLeft", "payload": {"user": "Bob"}}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param("this is not JSON", "unrecognized", id="not-json"),
        pytest.param(b"\x00\xff binary", "unrecognized", id="binary-garbage"),
        pytest.param("[1, 2, 3]", "unrecognized", id="json-array"),
        pytest.param('{"payload": {}}', "unrecognized", id="no-type"),
        pytest.param('{"type": "clientDance"}', "unrecognized", id="unknown-type"),
        pytest.param('{"type": 7}', "unrecognized", id="non-string-type"),
        pytest.param(
            '{"type": "clientSendMessage", "payload": {"text": ""}}',
            "invalid_payload",
            id="empty-text",
        ),
        pytest.param(
            msgspec.json.encode(send_message("x" * (MAX_TEXT_CHARS + 1))).decode(),
            "invalid_payload",
            id="text-too-long",
        ),
        pytest.param(
            '{"type": "clientSendMessage", "payload": {"text": "hi", "admin": true}}',
            "invalid_payload",
            id="unknown-field",
        ),
        pytest.param(
            '{"type": "clientSendMessage", "payload": {"text": 5}}',
            "invalid_payload",
            id="wrong-type",
        ),
        pytest.param('{"type": "clientSendMessage"}', "invalid_payload", id="missing-payload"),
    ],
)
async def test_bad_input_gets_a_server_error_and_the_session_goes_on(
    start_gateway: StartGateway, frame: str | bytes, code: str
) -> None:
    server = await start_gateway()
    async with connect(chat_url(server, "general", "Mallory")) as client:
        await client.expect("serverSystemMessage")
        await client.expect("serverPresence")
        await client.expect("serverHistory")
        await client.send_raw(frame)
        error = await client.receive()
        assert error["type"] == "serverError"
        assert error["payload"]["code"] == code
        assert error["payload"]["error"]  # a human-readable explanation
        await client.send_json(send_message("still here"))
        assert (await client.receive())["payload"]["text"] == "still here"


async def test_a_message_of_the_maximum_length_is_delivered(start_gateway: StartGateway) -> None:
    server = await start_gateway()
    text = "é" * MAX_TEXT_CHARS
    async with connect(chat_url(server, "general", "Ann")) as client:
        await client.expect("serverSystemMessage")
        await client.expect("serverPresence")
        await client.send_json(send_message(text))
        assert (await client.expect("serverNewMessage"))["payload"]["text"] == text


@pytest.mark.parametrize(
    ("size", "closed"),
    [pytest.param(0, False, id="max-passes"), pytest.param(1, True, id="max+1-closes-1009")],
)
async def test_frame_size_limit(start_gateway: StartGateway, size: int, closed: bool) -> None:
    limit = 32 * 1024
    server = await start_gateway(CHAT_WS_MAX_BYTES=str(limit))
    async with connect(chat_url(server, "general", "Ann")) as client:
        await client.expect("serverSystemMessage")
        await client.expect("serverPresence")
        await client.expect("serverHistory")
        envelope = '{"type": "clientPadding", "pad": ""}'
        frame = envelope.replace('""', '"' + "x" * (limit + size - len(envelope)) + '"')
        assert len(frame.encode()) == limit + size
        await client.send_raw(frame)
        if closed:
            assert await client.expect_close() == 1009
        else:
            assert (await client.receive())["type"] == "serverError"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/ws/chat/general", id="no-user"),
        pytest.param("/ws/chat/general?user=", id="empty-user"),
        pytest.param("/ws/chat/general?user=%0AEvil", id="user-with-newline"),
        pytest.param("/ws/chat/Upper?user=Ann", id="room-uppercase"),
        pytest.param("/ws/chat/a.b?user=Ann", id="room-with-dot"),
        pytest.param("/ws/chat/a%2A?user=Ann", id="room-with-star"),
        pytest.param("/ws/chat/" + "r" * 65 + "?user=Ann", id="room-too-long"),
    ],
)
async def test_handshake_is_rejected_with_403(start_gateway: StartGateway, path: str) -> None:
    server = await start_gateway()
    url = f"ws://{server.host}:{server.port}{path}"
    assert await handshake_status(url) == 403


async def test_an_unknown_path_is_not_a_websocket(start_gateway: StartGateway) -> None:
    server = await start_gateway()
    assert await handshake_status(chat_url(server, "general", "Ann").replace("/chat", "")) in (
        403,
        404,
    )


async def test_announcements_reach_every_room_matching_the_prefix(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway(
        CHAT_ANNOUNCE_INTERVAL_S="0.2",
        CHAT_ANNOUNCE_TEXT="Maintenance at 2 AM UTC.",
        CHAT_ANNOUNCE_ROOM_PREFIX="team-",
    )
    urls = [chat_url(server, room, "Ann") for room in ("team-a", "team-b", "lobby")]
    async with connect(urls[0]) as a, connect(urls[1]) as b, connect(urls[2]) as lobby:
        for client in (a, b):
            announcement = await client.expect("serverSystemAnnouncement")
            assert announcement["payload"] == {"text": "Maintenance at 2 AM UTC."}
        # Two more periods pass in team-a; lobby, which does not match, got none.
        for _ in range(2):
            await a.expect("serverSystemAnnouncement")
        await lobby.send_json(send_message("marker"))
        await lobby.expect("serverNewMessage")
        assert [m["type"] for m in lobby.received] == [
            "serverSystemMessage",
            "serverPresence",
            "serverHistory",
            "serverNewMessage",
        ]


async def test_health_endpoints_and_page(start_gateway: StartGateway) -> None:
    server = await start_gateway()

    def get(path: str) -> tuple[int, bytes, str]:
        with urllib.request.urlopen(server.url + path, timeout=scaled(5)) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")

    assert (await asyncio.to_thread(get, "/healthz"))[0] == 200
    assert (await asyncio.to_thread(get, "/readyz"))[0] == 200
    status, body, content_type = await asyncio.to_thread(get, "/")
    assert status == 200 and content_type.startswith("text/html") and b"<html" in body


ROOMS = 5
MEMBERS_PER_ROOM = 20
MESSAGES_PER_MEMBER = 5


async def _read_new_messages(client: WSClient, count: int) -> list[str]:
    texts: list[str] = []
    async with asyncio.timeout(scaled(30)):
        while len(texts) < count:
            message = await client.receive(timeout_s=30)
            if message["type"] == "serverNewMessage":
                texts.append(message["payload"]["text"])
    return texts


async def test_100_clients_in_5_rooms_get_every_message_of_their_room_once_in_order(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway()
    async with contextlib.AsyncExitStack() as stack:
        members: dict[str, list[tuple[str, WSClient]]] = defaultdict(list)
        for r in range(ROOMS):
            room = f"room-{r}"
            for m in range(MEMBERS_PER_ROOM):
                user = f"u{r}x{m}"
                client = await stack.enter_async_context(connect(chat_url(server, room, user)))
                members[room].append((user, client))

        async def talk(room: str, user: str, client: WSClient) -> None:
            for seq in range(MESSAGES_PER_MEMBER):
                await client.send_json(send_message(f"{room}|{user}|{seq}"))

        await asyncio.gather(*(talk(room, u, c) for room, ms in members.items() for u, c in ms))
        per_room = MEMBERS_PER_ROOM * MESSAGES_PER_MEMBER
        received = await asyncio.gather(
            *(_read_new_messages(c, per_room) for ms in members.values() for _, c in ms)
        )
        clients = [(room, c) for room, ms in members.items() for _, c in ms]
        for (room, _client), texts in zip(clients, received, strict=True):
            by_sender: dict[str, list[int]] = defaultdict(list)
            for text in texts:
                text_room, sender, seq = text.split("|")
                assert text_room == room, f"a member of {room} received {text!r}"
                by_sender[sender].append(int(seq))
            assert len(by_sender) == MEMBERS_PER_ROOM
            for sender, seqs in by_sender.items():
                assert seqs == list(range(MESSAGES_PER_MEMBER)), f"{sender} in {room}: {seqs}"

        # Every message has been delivered everywhere it belongs. A marker from each
        # room now follows anything that might have leaked from another room.
        for room, ms in members.items():
            await ms[0][1].send_json(send_message(f"{room}|end|0"))
        for room, client in clients:
            late = await _read_new_messages(client, 1)
            assert late == [f"{room}|end|0"], f"{room} received {late!r} before its marker"


async def test_disconnect_without_close_frame_announces_the_user_left(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway()
    async with connect(chat_url(server, "general", "Stayer")) as stayer:
        await stayer.expect("serverSystemMessage")
        await stayer.expect("serverPresence")
        async with connect(chat_url(server, "general", "Dropper")) as dropper:
            await stayer.expect("serverUserJoined")
            # Drop the TCP connection without a closing handshake.
            dropper.conn.transport.abort()
            with contextlib.suppress(ConnectionClosed):
                await dropper.conn.wait_closed()
        left = await stayer.expect("serverUserLeft")
        assert left["payload"] == {"user": "Dropper"}


async def test_two_tabs_of_one_user_are_announced_once(start_gateway: StartGateway) -> None:
    server = await start_gateway()
    async with connect(chat_url(server, "general", "Bob")) as bob:
        await bob.expect("serverSystemMessage")
        await bob.expect("serverPresence")
        async with connect(chat_url(server, "general", "Alice")) as tab1:
            await tab1.expect("serverPresence")
            async with connect(chat_url(server, "general", "Alice")) as tab2:
                roster = await tab2.expect("serverPresence")
                assert roster["payload"] == {"users": ["Alice", "Bob"]}
            await tab1.send_json(send_message("one tab left"))
            await bob.expect("serverNewMessage")
        left = await bob.expect("serverUserLeft")
        assert left["payload"] == {"user": "Alice"}
        news = [m["type"] for m in bob.received if m["type"].startswith("serverUser")]
        assert news == ["serverUserJoined", "serverUserLeft"]


async def test_a_silent_typist_stops_typing_after_the_ttl(start_gateway: StartGateway) -> None:
    server = await start_gateway(CHAT_TYPING_TTL_S="0.3")
    async with (
        connect(chat_url(server, "general", "Watcher")) as watcher,
        connect(chat_url(server, "general", "Typist")) as typist,
    ):
        await typist.expect("serverPresence")
        await typist.send_json({"type": "clientStartTyping"})
        assert (await watcher.expect("serverUserTyping"))["payload"]["isTyping"] is True
        stopped = await watcher.expect("serverUserTyping", timeout_s=2)
        assert stopped["payload"] == {"user": "Typist", "isTyping": False}
        # Sending a message while typing also ends it.
        await typist.send_json({"type": "clientStartTyping"})
        await watcher.expect("serverUserTyping")
        await typist.send_json(send_message("done"))
        await watcher.expect("serverNewMessage")
        after = await watcher.expect("serverUserTyping")
        assert after["payload"]["isTyping"] is False


async def test_a_typist_who_disconnects_stops_typing(start_gateway: StartGateway) -> None:
    server = await start_gateway()
    async with connect(chat_url(server, "general", "Watcher")) as watcher:
        async with connect(chat_url(server, "general", "Typist")) as typist:
            await typist.expect("serverPresence")
            await typist.send_json({"type": "clientStartTyping"})
            await watcher.expect("serverUserTyping")
        stopped = await watcher.expect("serverUserTyping")
        assert stopped["payload"] == {"user": "Typist", "isTyping": False}
        await watcher.expect("serverUserLeft")


class _UnreachableBroker(InProcessBroker):
    async def subscribe(self, room: str) -> None:
        raise BackendError("NATS is unavailable; cannot join the room")


async def test_a_backend_failure_while_joining_is_503_not_403() -> None:
    settings = load_settings({"CHAT_AUTH": "dev", "CHAT_ANNOUNCE_INTERVAL_S": "0"})
    registry = CollectorRegistry()
    broker = _UnreachableBroker()
    backend = Backend(broker, InProcessPresence(), InProcessHistory(broker))
    app = create_app(settings, backend, registry=registry)
    async with serve(app, **{**uvicorn_options(settings), "port": 0}) as server:
        assert await handshake_status(chat_url(server, "general", "Ann")) == 503
        assert await handshake_status(chat_url(server, "general")) == 403  # no identity
    rejected = "chat_gateway_handshakes_rejected_total"
    assert registry.get_sample_value(rejected, {"reason": "unavailable"}) == 1
    assert registry.get_sample_value(rejected, {"reason": "unauthenticated"}) == 1


class _FlakyHistory(InProcessHistory):
    """Fails to store messages whose text asks for it: NATS away, or a bug below."""

    async def append(
        self, room: str, data: bytes, *, exclude: str | None = None, key: str | None = None
    ) -> Appended:
        if b'"nats is down"' in data:
            raise BackendError("NATS is unavailable; the message was not stored")
        if b'"bug"' in data:
            raise RuntimeError("a bug with a secret detail")
        return await super().append(room, data, exclude=exclude, key=key)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        pytest.param("nats is down", "unavailable", id="backend-error-unavailable"),
        pytest.param("bug", "internal", id="handler-bug-internal"),
    ],
)
async def test_a_failed_send_is_answered_and_the_session_goes_on(text: str, code: str) -> None:
    settings = load_settings({"CHAT_AUTH": "dev", "CHAT_ANNOUNCE_INTERVAL_S": "0"})
    broker = InProcessBroker()
    app = create_app(settings, Backend(broker, InProcessPresence(), _FlakyHistory(broker)))
    async with (
        serve(app, **{**uvicorn_options(settings), "port": 0}) as server,
        connect(chat_url(server, "general", "Ann")) as client,
    ):
        await client.expect("serverPresence")
        await client.send_json(send_message(text))
        error = await client.expect("serverError")
        assert error["payload"]["code"] == code
        assert "secret" not in error["payload"]["error"]  # no exception text
        await client.send_json(send_message("still here"))
        assert (await client.expect("serverNewMessage"))["payload"]["text"] == "still here"


async def test_one_user_may_hold_at_most_the_cap_of_connections(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway(CHAT_MAX_CONNECTIONS_PER_USER="2")
    async with (
        connect(chat_url(server, "general", "Ann")) as first,
        connect(chat_url(server, "other", "Ann")) as second,
    ):
        for client in (first, second):
            await client.expect("serverPresence")
        assert await handshake_status(chat_url(server, "general", "Ann")) == 429
        assert await handshake_status(chat_url(server, "general", "Bob")) == 101
    # Her connections are gone: she may connect again.
    async with connect(chat_url(server, "general", "Ann")) as again:
        await again.expect("serverPresence")


async def test_arrivals_close_together_are_announced_once_each_in_order(
    start_gateway: StartGateway,
) -> None:
    # They come within the batching window of one another: held and sent together
    # (one write per member), never dropped, doubled or reordered.
    window_s = 0.3
    server = await start_gateway(CHAT_PRESENCE_BATCH_S=str(window_s))
    async with contextlib.AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(connect(chat_url(server, "general", "Watcher")))
        await watcher.expect("serverPresence")
        names = [f"User{i}" for i in range(5)]
        for name in names:
            client = await stack.enter_async_context(connect(chat_url(server, "general", name)))
            await client.expect("serverPresence")
        last_joined = time.monotonic()
        arrivals = [(await watcher.expect("serverUserJoined"))["payload"]["user"] for _ in names]
        assert arrivals == names
        assert time.monotonic() - last_joined < scaled(window_s + 1.0)
        await stack.aclose()
    news = [m for m in watcher.received if m["type"] == "serverUserJoined"]
    assert len(news) == len(names)
