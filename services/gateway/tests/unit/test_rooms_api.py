"""``RoomsResource`` in-process, on a fake manager: bounds, the claim filter, a directory away."""

from __future__ import annotations

from typing import Any, cast

import falcon.asgi
import falcon.testing

from chat_gateway.auth import DevAuthMiddleware, bearer_token
from chat_gateway.origin import OriginPolicy
from chat_gateway.rooms_api import RoomsResource
from falcon_pachinko import BackendError, WebSocketConnectionManager


class FakeManager:
    """Rooms and who is in them, as the manager's presence questions answer."""

    def __init__(self, rooms: dict[str, list[str]], *, away: bool = False) -> None:
        self.rooms = rooms
        self.away = away
        self.asked: list[str] = []

    async def get_rooms_by_prefix(self, prefix: str) -> list[str]:
        if self.away:
            raise BackendError("the room directory did not answer")
        return sorted(room for room in self.rooms if room.startswith(prefix))

    async def presence(self, room: str) -> list[str]:
        self.asked.append(room)
        return self.rooms[room]


def client(manager: FakeManager, max_rooms: int = 50) -> falcon.testing.TestClient:
    app: falcon.asgi.App[Any, Any] = falcon.asgi.App(middleware=[DevAuthMiddleware()])
    resource = RoomsResource(
        cast(WebSocketConnectionManager, manager), OriginPolicy(), max_rooms=max_rooms
    )
    app.add_route("/api/rooms", resource)
    return falcon.testing.TestClient(app)


def test_at_most_max_rooms_are_listed_and_counted() -> None:
    manager = FakeManager({f"r{i:03}": ["A"] * (i % 3) for i in range(120)})
    result = client(manager, max_rooms=10).simulate_get("/api/rooms", params={"user": "Zed"})
    assert result.status_code == 200
    assert result.json["truncated"] is True
    assert [room["name"] for room in result.json["rooms"]] == [f"r{i:03}" for i in range(10)]
    assert manager.asked == [f"r{i:03}" for i in range(10)]  # no question for unlisted rooms
    assert result.headers["Cache-Control"] == "no-store"


def test_a_directory_that_does_not_answer_is_503() -> None:
    result = client(FakeManager({}, away=True)).simulate_get("/api/rooms", params={"user": "Zed"})
    assert result.status_code == 503
    assert "Retry-After" in result.headers


def test_401_names_the_bearer_scheme() -> None:
    result = client(FakeManager({})).simulate_get("/api/rooms")
    assert result.status_code == 401
    assert result.headers["WWW-Authenticate"] == "Bearer"


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer   abc") == "abc"
    assert bearer_token("Basic dXNlcjpwYXNz") is None
    assert bearer_token("Bearer") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None
