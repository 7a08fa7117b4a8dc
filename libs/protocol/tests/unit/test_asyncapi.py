"""The AsyncAPI generator: nothing goes undescribed, and the output depends only on the code."""

from __future__ import annotations

import pytest

from chat_protocol.asyncapi import document, schemas, websocket
from chat_protocol.names import ROOM_NAME_PATTERN


def test_a_message_without_a_summary_stops_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    summaries = dict(websocket.SUMMARIES)
    del summaries["serverUserTyping"]
    monkeypatch.setattr(websocket, "SUMMARIES", summaries)
    with pytest.raises(ValueError, match="serverUserTyping"):
        document()


def test_a_close_code_without_a_meaning_stops_the_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    meanings = dict(websocket.CLOSE_CODES)
    del meanings["RESYNC"]
    monkeypatch.setattr(websocket, "CLOSE_CODES", meanings)
    with pytest.raises(ValueError, match="4003"):
        document()


def test_an_error_code_without_a_meaning_stops_the_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    meanings = dict(schemas.ERROR_CODES)
    del meanings["rate_limited"]
    monkeypatch.setattr(schemas, "ERROR_CODES", meanings)
    with pytest.raises(ValueError, match="rate_limited"):
        document()


def test_the_output_is_the_same_every_time() -> None:
    assert document() == document()


def test_a_final_python_anchor_becomes_the_json_schema_one() -> None:
    assert schemas.ecma_pattern(ROOM_NAME_PATTERN) == r"^[a-z0-9][a-z0-9_-]{0,63}$"
    assert schemas.ecma_pattern(r"^a\Zb") == r"^a\Zb"


def test_array_like_items_are_named_and_in_draft_07_form() -> None:
    change = document()["components"]["schemas"]["Change"]
    assert "prefixItems" not in change and len(change["items"]) == 4
    assert "`joined`, `room`, `connection_id`, `presence`" in change["description"]
