"""The rooms service's chat rules: what the room hears when presence changes."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from chat_rooms.metrics import Metrics
from chat_rooms.presence import PresenceRules, typists_to_stop
from falcon_pachinko import BackendError, Member
from falcon_pachinko.directory import Directory
from falcon_pachinko.presence import PresenceChange
from falcon_pachinko.registry import Lost
from falcon_pachinko.subjects import Subjects


class FakePublisher:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, Any, str | None]] = []
        self.fail = fail

    async def publish(self, room: str, data: bytes, *, exclude: str | None = None) -> None:
        if self.fail:
            raise BackendError("NATS is unavailable")
        self.sent.append((room, msgspec.json.decode(data), exclude))


def lost(room: str, conn: str, user: str | None, *, expired: bool = True) -> Lost:
    return Lost(room, Member(connection_id=conn, presence=user), "n1", expired)


def rules(publisher: FakePublisher) -> tuple[PresenceRules, CollectorRegistry]:
    registry = CollectorRegistry()
    # Never started: the metrics only read its state.
    metrics = Metrics(registry, Directory(Client(), Subjects("chat"), ttl_s=10))
    return PresenceRules(publisher, metrics), registry  # type: ignore[arg-type]


async def test_an_arrival_is_announced_to_everyone_but_the_arriving_connection() -> None:
    publisher = FakePublisher()
    presence, registry = rules(publisher)
    change = PresenceChange(room="general", identity="Alice", present=True, connection_id="c1")
    await presence.on_presence(change)
    assert publisher.sent == [
        ("general", {"type": "serverUserJoined", "payload": {"user": "Alice"}}, "c1")
    ]
    assert registry.get_sample_value("chat_rooms_arrivals_announced_total") == 1


async def test_a_departure_is_announced_to_everyone() -> None:
    publisher = FakePublisher()
    presence, registry = rules(publisher)
    change = PresenceChange(room="general", identity="Alice", present=False, connection_id="c1")
    await presence.on_presence(change)
    assert publisher.sent == [
        ("general", {"type": "serverUserLeft", "payload": {"user": "Alice"}}, None)
    ]
    assert registry.get_sample_value("chat_rooms_departures_announced_total") == 1


async def test_typists_of_an_expired_gateway_are_stopped_once_each() -> None:
    publisher = FakePublisher()
    presence, registry = rules(publisher)
    await presence.on_lost(
        [lost("r", "c1", "Alice"), lost("r", "c2", "Alice"), lost("s", "c3", "Bob")]
    )
    typing = {"type": "serverUserTyping"}
    assert publisher.sent == [
        ("r", {**typing, "payload": {"user": "Alice", "isTyping": False}}, None),
        ("s", {**typing, "payload": {"user": "Bob", "isTyping": False}}, None),
    ]
    assert registry.get_sample_value("chat_rooms_members_lost_total") == 3


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        pytest.param([lost("r", "c1", None)], [], id="anonymous"),
        pytest.param([lost("r", "c1", "Alice", expired=False)], [], id="graceful-goodbye"),
        pytest.param(
            [lost("r", "c1", "Bob"), lost("r", "c2", "Alice"), lost("r", "c3", "Bob")],
            [("r", "Bob"), ("r", "Alice")],
            id="first-seen-order",
        ),
    ],
)
def test_typists_to_stop(members: list[Lost], expected: list[tuple[str, str]]) -> None:
    assert typists_to_stop(members) == expected


async def test_a_publish_failure_is_logged_not_raised() -> None:
    presence, _ = rules(FakePublisher(fail=True))
    change = PresenceChange(room="r", identity="Alice", present=False, connection_id="c1")
    await presence.on_presence(change)  # does not raise


async def test_an_announcement_that_could_not_be_sent_is_not_counted() -> None:
    presence, registry = rules(FakePublisher(fail=True))
    change = PresenceChange(room="r", identity="Alice", present=True, connection_id="c1")
    await presence.on_presence(change)
    assert registry.get_sample_value("chat_rooms_arrivals_announced_total") == 0
