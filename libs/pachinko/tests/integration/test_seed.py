"""The seed's example code, unchanged, against real uvicorn and real clients."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import types
from pathlib import Path
from typing import Any

import pytest

from falcon_pachinko.testing import connect, handshake_status, serve

pytestmark = pytest.mark.integration

_SEED = Path(__file__).with_name("seed_app.py")
_counter = itertools.count()


def load_seed() -> types.ModuleType:
    """A fresh copy of the seed module: its app, manager and controller are module globals."""
    spec = importlib.util.spec_from_file_location(f"seed_app_{next(_counter)}", _SEED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_full_chat_scenario() -> None:
    seed = load_seed()
    async with serve(seed.app) as server:
        url = server.ws_url("/ws/chat/chat_general", user="Alice")
        async with connect(url) as alice:
            welcome = await alice.receive()
            assert welcome == {
                "type": "serverSystemMessage",
                "payload": {"text": "Welcome Alice to room 'chat_general'!"},
            }
            async with connect(server.ws_url("/ws/chat/chat_general", user="Bob")) as bob:
                assert (await bob.receive())["type"] == "serverSystemMessage"
                assert await alice.receive() == {
                    "type": "serverUserJoined",
                    "payload": {"user": "Bob"},
                }

                await alice.send_json(
                    {"type": "clientSendMessage", "payload": {"text": "Hello everyone!"}}
                )
                expected = {
                    "type": "serverNewMessage",
                    "payload": {"user": "Alice", "text": "Hello everyone!"},
                }
                assert await alice.receive() == expected  # the sender gets it too
                assert await bob.receive() == expected

                await alice.send_json({"type": "clientStartTyping"})
                await alice.send_json({"type": "clientStopTyping"})
                assert await bob.receive() == {
                    "type": "serverUserTyping",
                    "payload": {"user": "Alice", "isTyping": True},
                }
                assert await bob.receive() == {
                    "type": "serverUserTyping",
                    "payload": {"user": "Alice", "isTyping": False},
                }

                await bob.send_raw("this is not JSON")
                await bob.send_json({"type": "clientDance", "payload": {}})
                for _ in range(2):
                    assert await bob.receive() == {
                        "type": "serverError",
                        "payload": {"error": "Unrecognized message format or type."},
                    }

                # Typing is not echoed to the typist: the next thing Alice sees is
                # Bob leaving, not her own typing events.
            assert await alice.receive() == {"type": "serverUserLeft", "payload": {"user": "Bob"}}
        assert await seed.conn_mgr.get_rooms_by_prefix("") == []


async def test_connection_without_user_is_rejected_with_403() -> None:
    seed = load_seed()
    async with serve(seed.app) as server:
        assert await handshake_status(server.ws_url("/ws/chat/chat_general")) == 403
        assert await seed.conn_mgr.get_rooms_by_prefix("") == []


class _FastSleep:
    """Stands in for the seed module's ``asyncio``: the first hour passes at once."""

    def __init__(self) -> None:
        self.periods = 0
        self.release = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        assert seconds == 3600
        self.periods += 1
        if self.periods > 1:
            await asyncio.Event().wait()  # later periods never come
        await self.release.wait()


async def test_worker_announces_to_every_room_found_by_prefix() -> None:
    seed = load_seed()
    clock = _FastSleep()
    seed.asyncio = clock  # only the worker's global lookup of asyncio.sleep sees this
    async with serve(seed.app) as server:
        urls = {
            room: server.ws_url(f"/ws/chat/{room}", user="U")
            for room in ("chat_a", "chat_b", "lobby")
        }
        async with (
            connect(urls["chat_a"]) as a,
            connect(urls["chat_b"]) as b,
            connect(urls["lobby"]) as lobby,
        ):
            for client in (a, b, lobby):
                await client.expect("serverSystemMessage")
            clock.release.set()
            announcement: dict[str, Any] = {
                "type": "serverSystemAnnouncement",
                "payload": {"text": "System maintenance is scheduled for 2 AM UTC."},
            }
            assert await a.expect("serverSystemAnnouncement") == announcement
            assert await b.expect("serverSystemAnnouncement") == announcement
            # "lobby" does not match "chat_": after a marker sent to lobby itself, it
            # must have seen nothing else (one process delivers in publish order).
            await lobby.send_json({"type": "clientSendMessage", "payload": {"text": "marker"}})
            assert (await lobby.receive())["payload"]["text"] == "marker"
            assert [m["type"] for m in lobby.received] == [
                "serverSystemMessage",
                "serverNewMessage",
            ]
    assert seed.controller.running == 0


async def test_the_seed_resource_runs_unchanged_across_two_processes_on_nats(
    pachinko_nats: Any,
) -> None:
    import falcon.asgi
    import nats

    import falcon_pachinko
    from falcon_pachinko.backends.nats import NatsBackend
    from falcon_pachinko.directory import Directory
    from falcon_pachinko.subjects import Subjects

    server = await pachinko_nats()
    seed = load_seed()
    nc = await nats.connect(server.url)
    directory = Directory(nc, Subjects("chat"), ttl_s=10)
    await directory.start()

    def gateway() -> Any:
        # The seed's resource and middleware as written; only the backend differs.
        app = falcon.asgi.App(middleware=[seed.AuthMiddleware()])
        falcon_pachinko.install(app, NatsBackend(server.url))
        app.add_websocket_route("/ws/chat/{room_name}", seed.ChatRoomResource)
        return app

    try:
        async with serve(gateway()) as a, serve(gateway()) as b:
            async with connect(a.ws_url("/ws/chat/chat_general", user="Alice")) as alice:
                await alice.expect("serverSystemMessage")
                async with connect(b.ws_url("/ws/chat/chat_general", user="Bob")) as bob:
                    await bob.expect("serverSystemMessage")
                    joined = await alice.expect("serverUserJoined")
                    assert joined["payload"] == {"user": "Bob"}
                    await bob.send_json(
                        {"type": "clientSendMessage", "payload": {"text": "Hi from b"}}
                    )
                    expected = {
                        "type": "serverNewMessage",
                        "payload": {"user": "Bob", "text": "Hi from b"},
                    }
                    assert await alice.expect("serverNewMessage") == expected
                    assert await bob.expect("serverNewMessage") == expected
                    await bob.send_json({"type": "clientStartTyping"})
                    typing = await alice.expect("serverUserTyping")
                    assert typing["payload"] == {"user": "Bob", "isTyping": True}
                left = await alice.expect("serverUserLeft")
                assert left["payload"] == {"user": "Bob"}
                assert not [m for m in bob.received if m["type"] == "serverUserTyping"]
    finally:
        await directory.stop()
        await nc.close()
