"""Where a chat message's position goes, and the serverHistory frame."""

from __future__ import annotations

import json

import msgspec

from chat_protocol.history import history_frame, idempotency_key, stamp
from chat_protocol.messages import NewMessagePayload, ServerNewMessage, encode
from falcon_pachinko.history import HistoryBatch, Position, Stored

POSITION = Position(seq=42, id="m-1", ts=1_700_000_000_000)


def test_the_position_goes_into_the_payload_and_the_client_msg_id_stays() -> None:
    data = encode(
        ServerNewMessage(payload=NewMessagePayload(user="Al", text="hi", client_msg_id="c1"))
    )
    assert json.loads(stamp(data, POSITION)) == {
        "type": "serverNewMessage",
        "payload": {
            "user": "Al",
            "text": "hi",
            "clientMsgId": "c1",
            "id": "m-1",
            "seq": 42,
            "ts": 1_700_000_000_000,
        },
    }


def test_anything_else_stored_gets_the_top_level_stamp() -> None:
    assert json.loads(stamp(b'{"type":"other"}', POSITION)) == {
        "type": "other",
        "seq": 42,
        "id": "m-1",
        "ts": 1_700_000_000_000,
    }


def test_a_history_frame_holds_payloads_oldest_first() -> None:
    stamped = [
        Stored(Position(seq=s, id=f"m{s}", ts=s), stamp(_message(f"t{s}"), Position(s, f"m{s}", s)))
        for s in (3, 5)
    ]
    frame = history_frame(HistoryBatch(room="r", messages=stamped, complete=False, resumed=True))
    assert msgspec.json.decode(msgspec.json.encode(frame)) == {
        "type": "serverHistory",
        "payload": {
            "messages": [
                {"user": "Al", "text": "t3", "id": "m3", "seq": 3, "ts": 3},
                {"user": "Al", "text": "t5", "id": "m5", "seq": 5, "ts": 5},
            ],
            "complete": False,
            "resumed": True,
        },
    }
    plain = history_frame(HistoryBatch(room="r", messages=[], complete=True))
    assert json.loads(msgspec.json.encode(plain))["payload"] == {"messages": [], "complete": True}


def test_keys_are_per_user() -> None:
    assert idempotency_key("Al", "c1") != idempotency_key("Bo", "c1")
    assert idempotency_key("Al", "c1") == idempotency_key("Al", "c1")


def _message(text: str) -> bytes:
    return encode(ServerNewMessage(payload=NewMessagePayload(user="Al", text=text)))
