"""The message contract: strict client decoding, server encoding in the seed's shapes."""

from __future__ import annotations

import json
import os
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat_protocol.messages import (
    MAX_CLIENT_MSG_ID_CHARS,
    MAX_TEXT_CHARS,
    ClientFetchHistory,
    ClientMessage,
    ClientSendMessage,
    ClientStartTyping,
    ClientStopTyping,
    EmptyPayload,
    ErrorCode,
    ErrorPayload,
    NewMessagePayload,
    SendMessagePayload,
    ServerError,
    ServerMessage,
    ServerNewMessage,
    ServerSystemAnnouncement,
    ServerSystemMessage,
    ServerUserJoined,
    ServerUserLeft,
    ServerUserTyping,
    TextPayload,
    TypingPayload,
    UserPayload,
)

CLIENT_MESSAGE_TYPES = (ClientSendMessage, ClientStartTyping, ClientStopTyping, ClientFetchHistory)

# The codecs are falcon_pachinko's: it decodes frames with typed msgspec decoders
# built from the resource's schema (ClientMessage), and encodes what the gateway
# sends with msgspec's JSON encoder. The tests use the same, built from the same types.
client_decoder = msgspec.json.Decoder(ClientMessage)
server_decoder = msgspec.json.Decoder(ServerMessage)
encode = msgspec.json.encode

#: Examples per property test: 20 keeps each under the 50 ms unit-test budget;
#: set PROPERTY_EXAMPLES (say, 10000) for a deeper search.
PROPERTY_EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "20"))

# -- client to server: accepted ---------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        pytest.param(
            b'{"type": "clientSendMessage", "payload": {"text": "Hello everyone!"}}',
            ClientSendMessage(payload=SendMessagePayload(text="Hello everyone!")),
            id="send-message",
        ),
        pytest.param(b'{"type": "clientStartTyping"}', ClientStartTyping(), id="start-typing"),
        pytest.param(
            b'{"type": "clientStartTyping", "payload": {}}',
            ClientStartTyping(),
            id="start-typing-empty-payload",
        ),
        pytest.param(b'{"type": "clientStopTyping"}', ClientStopTyping(), id="stop-typing"),
        pytest.param(
            b'{"payload": {}, "type": "clientStopTyping"}',
            ClientStopTyping(payload=EmptyPayload()),
            id="stop-typing-payload-first",
        ),
        pytest.param(
            b'{"type":"clientSendMessage","payload":{"text":"' + b"x" * MAX_TEXT_CHARS + b'"}}',
            ClientSendMessage(payload=SendMessagePayload(text="x" * MAX_TEXT_CHARS)),
            id="text-at-max",
        ),
        pytest.param(
            '{"type":"clientSendMessage","payload":{"text":"日本"}}'.encode(),
            ClientSendMessage(payload=SendMessagePayload(text="日本")),
            id="non-ascii-text",
        ),
    ],
)
def test_client_decoder_decodes_the_client_messages(frame: bytes, expected: object) -> None:
    decoded = client_decoder.decode(frame)
    assert type(decoded) is type(expected)
    assert decoded == expected


def test_the_text_limit_counts_characters_not_bytes() -> None:
    text = "é" * MAX_TEXT_CHARS  # 2 bytes each in UTF-8
    frame = msgspec.json.encode({"type": "clientSendMessage", "payload": {"text": text}})
    decoded = client_decoder.decode(frame)
    assert isinstance(decoded, ClientSendMessage)
    assert decoded.payload.text == text


# -- client to server: rejected ---------------------------------------------------


def send_message(text: Any) -> dict[str, Any]:
    return {"type": "clientSendMessage", "payload": {"text": text}}


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(send_message(""), id="empty-text"),
        pytest.param(send_message("x" * (MAX_TEXT_CHARS + 1)), id="text-max+1"),
        pytest.param(send_message(7), id="text-not-a-string"),
        pytest.param(send_message(None), id="text-null"),
        pytest.param({"type": "clientSendMessage"}, id="send-without-payload"),
        pytest.param({"type": "clientSendMessage", "payload": {}}, id="send-without-text"),
        pytest.param({"type": "clientSendMessage", "payload": "hi"}, id="payload-not-object"),
        pytest.param(
            {"type": "clientSendMessage", "payload": {"text": "hi", "user": "Mallory"}},
            id="unknown-payload-field",
        ),
        pytest.param({**send_message("hi"), "room": "general"}, id="unknown-top-level-field"),
        pytest.param(
            {"type": "clientStartTyping", "payload": {"isTyping": True}},
            id="typing-with-payload-field",
        ),
        pytest.param({"type": "clientStopTyping", "payload": None}, id="typing-null-payload"),
        pytest.param({"type": "clientStartTyping", "extra": 1}, id="typing-unknown-field"),
        pytest.param({"type": "serverNewMessage", "payload": {}}, id="server-type"),
        pytest.param({"type": "clientsendmessage"}, id="wrong-case-type"),
        pytest.param({"type": 1}, id="type-not-a-string"),
        pytest.param({"payload": {"text": "hi"}}, id="no-type"),
        pytest.param([send_message("hi")], id="array"),
        pytest.param("clientStartTyping", id="string"),
    ],
)
def test_client_decoder_rejects_invalid_messages(message: Any) -> None:
    with pytest.raises(msgspec.ValidationError):
        client_decoder.decode(msgspec.json.encode(message))


@pytest.mark.parametrize(
    "frame",
    [b"", b"{", b"not json", b'{"type": "clientStartTyping"} trailing', b"\xff\xfe"],
    ids=["empty", "truncated", "not-json", "trailing-data", "not-utf8"],
)
def test_client_decoder_rejects_malformed_json(frame: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        client_decoder.decode(frame)


# -- client decoder: property -------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
client_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["clientSendMessage", "clientStartTyping", "clientStopTyping"])},
    optional={
        "payload": st.one_of(
            json_values,
            st.fixed_dictionaries({}, optional={"text": json_values, "extra": json_values}),
        )
    },
)
frames = st.one_of(
    st.binary(max_size=256),
    json_values.map(msgspec.json.encode),
    client_like.map(msgspec.json.encode),
)


@settings(max_examples=PROPERTY_EXAMPLES)
@given(frames)
def test_any_bytes_decode_to_a_client_message_or_a_documented_error(frame: bytes) -> None:
    try:
        message = client_decoder.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return
    assert isinstance(message, CLIENT_MESSAGE_TYPES)
    if isinstance(message, ClientSendMessage):
        assert 1 <= len(message.payload.text) <= MAX_TEXT_CHARS


def test_client_message_union_is_every_client_message() -> None:
    assert set(ClientMessage.__args__) == set(CLIENT_MESSAGE_TYPES)


def test_a_client_msg_id_is_optional_bounded_and_camel_case() -> None:
    plain = client_decoder.decode(b'{"type":"clientSendMessage","payload":{"text":"hi"}}')
    assert isinstance(plain, ClientSendMessage) and plain.payload.client_msg_id is None
    longest = "m" * MAX_CLIENT_MSG_ID_CHARS
    frame = {"type": "clientSendMessage", "payload": {"text": "hi", "clientMsgId": longest}}
    message = client_decoder.decode(msgspec.json.encode(frame))
    assert isinstance(message, ClientSendMessage) and message.payload.client_msg_id == longest
    for bad in ("", longest + "m", 7):
        frame["payload"]["clientMsgId"] = bad  # type: ignore[index]
        with pytest.raises(msgspec.ValidationError):
            client_decoder.decode(msgspec.json.encode(frame))


@pytest.mark.parametrize(
    ("frame", "before", "limit"),
    [
        pytest.param(b'{"type":"clientFetchHistory"}', None, 50, id="defaults"),
        pytest.param(
            b'{"type":"clientFetchHistory","payload":{"before":12,"limit":5}}', 12, 5, id="given"
        ),
    ],
)
def test_fetch_history_decodes(frame: bytes, before: int | None, limit: int) -> None:
    message = client_decoder.decode(frame)
    assert isinstance(message, ClientFetchHistory)
    assert (message.payload.before, message.payload.limit) == (before, limit)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param('{"before":0}', id="before-zero"),
        pytest.param('{"limit":0}', id="limit-zero"),
        pytest.param('{"before":"12"}', id="before-string"),
        pytest.param('{"after":3}', id="unknown-field"),
    ],
)
def test_bad_fetch_history_is_rejected(payload: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        client_decoder.decode(f'{{"type":"clientFetchHistory","payload":{payload}}}'.encode())


def test_a_new_message_without_a_position_keeps_the_seeds_shape() -> None:
    message = ServerNewMessage(payload=NewMessagePayload(user="Al", text="hi"))
    assert json.loads(msgspec.json.encode(message)) == {
        "type": "serverNewMessage",
        "payload": {"user": "Al", "text": "hi"},
    }


# -- server to client ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            ServerNewMessage(payload=NewMessagePayload(user="Alice", text="Hello everyone!")),
            {"type": "serverNewMessage", "payload": {"user": "Alice", "text": "Hello everyone!"}},
            id="new-message",
        ),
        pytest.param(
            ServerUserJoined(payload=UserPayload(user="Bob")),
            {"type": "serverUserJoined", "payload": {"user": "Bob"}},
            id="user-joined",
        ),
        pytest.param(
            ServerUserLeft(payload=UserPayload(user="Alice")),
            {"type": "serverUserLeft", "payload": {"user": "Alice"}},
            id="user-left",
        ),
        pytest.param(
            ServerUserTyping(payload=TypingPayload(user="Charlie", is_typing=True)),
            {"type": "serverUserTyping", "payload": {"user": "Charlie", "isTyping": True}},
            id="user-typing",
        ),
        pytest.param(
            ServerUserTyping(payload=TypingPayload(user="Charlie", is_typing=False)),
            {"type": "serverUserTyping", "payload": {"user": "Charlie", "isTyping": False}},
            id="user-stopped-typing",
        ),
        pytest.param(
            ServerSystemMessage(payload=TextPayload(text="Welcome Bob to room 'general'!")),
            {"type": "serverSystemMessage", "payload": {"text": "Welcome Bob to room 'general'!"}},
            id="system-message",
        ),
        pytest.param(
            ServerSystemAnnouncement(payload=TextPayload(text="Maintenance at noon")),
            {"type": "serverSystemAnnouncement", "payload": {"text": "Maintenance at noon"}},
            id="system-announcement",
        ),
    ],
)
def test_server_messages_encode_to_the_seed_shapes(
    message: ServerMessage, expected: dict[str, Any]
) -> None:
    # The exact bytes: field order and spelling as in the seed, compact separators.
    assert encode(message) == json.dumps(expected, separators=(",", ":")).encode()
    assert server_decoder.decode(encode(message)) == message


def test_user_typing_encodes_exactly_as_the_seed_example() -> None:
    message = ServerUserTyping(payload=TypingPayload(user="Charlie", is_typing=True))
    assert (
        encode(message)
        == b'{"type":"serverUserTyping","payload":{"user":"Charlie","isTyping":true}}'
    )


def test_server_error_carries_the_seed_error_field_plus_a_code() -> None:
    message = ServerError(payload=ErrorPayload(error="Unrecognized message format or type."))
    # The seed's shape is {"error": ...}; "code" is an added field with a default.
    assert json.loads(encode(message)) == {
        "type": "serverError",
        "payload": {"error": "Unrecognized message format or type.", "code": "unrecognized"},
    }
    invalid = ServerError(payload=ErrorPayload(error="bad", code=ErrorCode.INVALID_PAYLOAD))
    assert json.loads(encode(invalid))["payload"]["code"] == "invalid_payload"


def test_the_client_decoder_does_not_accept_server_messages() -> None:
    frame = encode(ServerUserJoined(payload=UserPayload(user="Bob")))
    with pytest.raises(msgspec.ValidationError):
        client_decoder.decode(frame)
