"""Rendering children's log lines: readable, and never showing a credential."""

from __future__ import annotations

import json

import pytest

from chat_launcher.logview import is_secret_key, parse, ready_port, render


def line(**fields: object) -> bytes:
    return json.dumps(fields).encode() + b"\n"


def test_an_event_shows_its_name_then_its_fields() -> None:
    record = parse(
        line(
            event="service.ready",
            level="info",
            timestamp="2024-01-01T00:00:00Z",
            logger="chat_rooms.service",
            service="rooms",
            port=9101,
            ttl_s=10.0,
        )
    )
    assert render("rooms", record) == ["rooms | service.ready service=rooms port=9101 ttl_s=10.0"]


def test_levels_above_info_are_shown() -> None:
    record = parse(line(event="nats.disconnected", level="warning"))
    assert render("gateway-8000", record) == ["gateway-8000 | WARNING nats.disconnected"]


def test_values_with_spaces_are_quoted() -> None:
    record = parse(line(event="announcer.sent", text="two words", empty=""))
    assert render("announcer", record) == ['announcer | announcer.sent text="two words" empty=""']


@pytest.mark.parametrize(
    "key",
    ["token", "secret", "password", "jwt_secret", "Authorization", "access_token", "query_string"],
)
def test_credential_fields_are_never_shown(key: str) -> None:
    rendered = "\n".join(render("gateway", parse(line(event="x", **{key: "hunter2-value"}))))
    assert "hunter2-value" not in rendered
    assert key not in rendered


def test_credential_fields_nested_in_a_value_are_dropped() -> None:
    record = parse(line(event="x", request={"path": "/ws", "headers": {"cookie": "c-value"}}))
    (rendered,) = render("gateway", record)
    assert "c-value" not in rendered
    assert '"path":"/ws"' in rendered


def test_query_strings_are_cut_from_events_and_values() -> None:
    record = parse(line(event="GET /ws/chat/general?token=abc.def.ghi", path="/x?token=abc.def"))
    (rendered,) = render("gateway", record)
    assert "abc.def" not in rendered
    assert "?[redacted]" in rendered


def test_a_line_that_is_not_json_is_passed_through() -> None:
    text = b"Traceback (most recent call last):\n"
    assert render("rooms", parse(text)) == ["rooms | Traceback (most recent call last):"]
    assert render("rooms", parse(b"{not json\n")) == ["rooms | {not json"]
    assert render("rooms", parse(b"[1, 2]\n")) == ["rooms | [1, 2]"]


def test_an_exception_is_shown_line_by_line_under_its_event() -> None:
    record = parse(line(event="boom", level="error", exception="Traceback:\n  File x\nKeyError"))
    assert render("rooms", record) == [
        "rooms | ERROR boom",
        "rooms |   Traceback:",
        "rooms |     File x",
        "rooms |   KeyError",
    ]


def test_ready_port_reads_only_service_ready_events() -> None:
    assert ready_port(parse(line(event="service.ready", port=8001))) == 8001
    assert ready_port(parse(line(event="service.ready", port="8001"))) is None
    assert ready_port(parse(line(event="service.ready", port=True))) is None
    assert ready_port(parse(line(event="nats.connected", port=4222))) is None
    assert ready_port(parse(b"service.ready port=1\n")) is None


def test_is_secret_key() -> None:
    assert is_secret_key("CHAT_JWT_SECRET")
    assert not is_secret_key("port")
