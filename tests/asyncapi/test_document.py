"""``docs/asyncapi.yaml``: what the protocol's structs generate, valid AsyncAPI 3.0.0, complete.

The committed document must equal :func:`chat_launcher.asyncapi.render` byte for
byte, so a struct, a constraint, a close code or an error code that changes
without the document being regenerated fails here.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from jsonschema import Draft7Validator

from chat_launcher.asyncapi import render
from chat_protocol import messages
from chat_protocol.close_codes import ChatCloseCode, CloseCode
from chat_protocol.messages import MAX_CLIENT_MSG_ID_CHARS, MAX_TEXT_CHARS, ErrorCode
from chat_protocol.names import ROOM_NAME_PATTERN, USER_NAME_PATTERN
from chat_protocol.subjects import PREFIX
from falcon_pachinko.backends.nats.history import (
    ID_HEADER,
    LAST_SEQUENCE_HEADER,
    MSG_ID_HEADER,
    SEQUENCE_HEADER,
    TIME_HEADER,
)
from falcon_pachinko.backends.nats.plumbing import EXCLUDE_HEADER, ORIGIN_HEADER
from falcon_pachinko.subjects import Subjects

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
SCHEMA = Path(__file__).parent / "schema" / "3.0.0.json"
REGENERATE = ".venv/bin/chat asyncapi --output docs/asyncapi.yaml"


@pytest.fixture(scope="module")
def committed() -> str:
    return DOCUMENT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def doc(committed: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(committed)
    return loaded


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def errors(validator: Draft7Validator, instance: Any) -> list[str]:
    found = validator.iter_errors(instance)
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in found]


def test_the_committed_document_is_what_the_structs_generate(committed: str) -> None:
    generated = render()
    if committed != generated:
        diff = difflib.unified_diff(
            committed.splitlines(), generated.splitlines(), "committed", "generated", lineterm=""
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(
            f"docs/asyncapi.yaml is out of date: regenerate it with `{REGENERATE}`\n{shown}"
        )


def test_the_document_is_valid_asyncapi_3_0_0(
    doc: dict[str, Any], validator: Draft7Validator
) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert errors(validator, doc) == []


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda d: d.pop("info"), id="no-info"),
        pytest.param(
            lambda d: d["operations"]["clientSendMessage"].update(action="publish"), id="v2-action"
        ),
        pytest.param(lambda d: d["channels"]["chatRoom"].update(address=42), id="bad-address"),
        pytest.param(
            lambda d: d["components"]["schemas"]["Kick"]["properties"]["identity"].update(
                maxLength=-1
            ),
            id="bad-schema",
        ),
    ],
)
def test_the_schema_refuses_a_broken_document(
    doc: dict[str, Any], validator: Draft7Validator, breakage: Any
) -> None:
    broken = copy.deepcopy(doc)
    breakage(broken)
    assert errors(validator, broken) != []


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    refs = references(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def structs_of(module: Any) -> list[type[msgspec.Struct]]:
    return [
        value
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and value.__module__ == module.__name__
        and not name.startswith("_")
    ]


def test_every_message_struct_is_in_the_document(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    channel = doc["channels"]["chatRoom"]["messages"]
    operations = {
        ref["$ref"].rsplit("/", 1)[1]
        for op in doc["operations"].values()
        if op["channel"]["$ref"] == "#/channels/chatRoom"
        for ref in op["messages"]
    }
    structs = structs_of(messages)
    assert len(structs) > 10
    for struct in structs:
        assert struct.__name__ in schemas, struct.__name__
        tag = struct.__struct_config__.tag
        if tag is not None:
            assert doc["components"]["messages"][tag]["payload"] == {
                "$ref": f"#/components/schemas/{struct.__name__}"
            }
            assert tag in channel and tag in operations, tag


def test_client_messages_are_received_and_server_messages_sent(doc: dict[str, Any]) -> None:
    for name, operation in doc["operations"].items():
        if operation["channel"]["$ref"] == "#/channels/chatRoom":
            assert operation["action"] == ("receive" if name.startswith("client") else "send")
    reply = doc["operations"]["clientFetchHistory"]["reply"]
    assert reply["messages"] == [{"$ref": "#/channels/chatRoom/messages/serverHistory"}]


def test_every_close_code_is_in_the_document(doc: dict[str, Any]) -> None:
    channel = doc["channels"]["chatRoom"]
    rows = {row["code"]: row for row in channel["x-close-codes"]}
    codes = [*CloseCode, *ChatCloseCode]
    assert set(rows) == {int(code) for code in codes}
    for code in codes:
        assert rows[int(code)]["name"] == code.name
        assert rows[int(code)]["meaning"]
        assert f"| {int(code)} | {code.name} |" in channel["description"]


def test_every_error_code_is_in_the_document(doc: dict[str, Any]) -> None:
    codes = [value for name, value in vars(ErrorCode).items() if name.isupper()]
    code = doc["components"]["schemas"]["ErrorPayload"]["properties"]["code"]
    assert code["enum"] == codes
    listed = doc["components"]["messages"]["serverError"]["x-error-codes"]
    assert list(listed) == codes and all(listed.values())


def test_constraints_and_wire_names_come_through(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    send = schemas["SendMessagePayload"]
    assert send["additionalProperties"] is False
    assert (send["properties"]["text"]["minLength"], send["properties"]["text"]["maxLength"]) == (
        1,
        MAX_TEXT_CHARS,
    )
    client_msg_id = send["properties"]["clientMsgId"]["anyOf"][0]
    assert client_msg_id["maxLength"] == MAX_CLIENT_MSG_ID_CHARS
    assert "isTyping" in schemas["TypingPayload"]["properties"]
    assert schemas["FetchHistoryPayload"]["properties"]["limit"]["minimum"] == 1


@pytest.mark.parametrize(
    ("schema", "pattern", "samples"),
    [
        ("RoomName", ROOM_NAME_PATTERN, ["general", "team-1", "_x", "a.b", "a\n", "A", "a" * 65]),
        ("UserName", USER_NAME_PATTERN, ["Alice", "Zoë O'Neil", " Bob", "x\n", "a" * 33]),
    ],
)
def test_patterns_accept_what_the_protocol_accepts(
    doc: dict[str, Any], schema: str, pattern: str, samples: list[str]
) -> None:
    written = doc["components"]["schemas"][schema]
    assert written["pattern"].endswith("$") and not written["pattern"].endswith("\\Z")
    for sample in samples:
        protocol = re.fullmatch(pattern, sample) is not None and len(sample) <= written["maxLength"]
        # JSON Schema's `$` is the end of the input (ECMA 262, no multiline flag): Python's \Z.
        document = re.search(written["pattern"][:-1] + r"\Z", sample) is not None
        assert document == protocol, sample


def test_nats_addresses_are_the_library_s_subjects(doc: dict[str, Any]) -> None:
    subjects = Subjects(PREFIX)
    channels = doc["channels"]
    address = {name: channel["address"] for name, channel in channels.items()}
    assert address["natsRoom"].format(roomToken="general") == subjects.room("general")
    assert address["natsStored"].format(roomToken="general") == subjects.stored("general")
    assert address["natsDirect"].format(node="n1") == subjects.direct_node("n1")
    assert address["natsSyncNode"].format(node="n1") == subjects.sync_node("n1")
    assert address["natsSyncAll"] == subjects.sync_all
    assert address["natsKick"] == subjects.kick
    assert address["natsDirectoryEvents"] == subjects.events
    queries = [subjects.query_rooms, subjects.query_members, subjects.query_presence]
    assert set(queries + [subjects.query_connections]) <= set(address.values())
    for name, channel in channels.items():
        for parameter in re.findall(r"{(\w+)}", channel.get("address") or ""):
            assert parameter in channel["parameters"], (name, parameter)


def test_nats_messages_carry_the_library_s_headers(doc: dict[str, Any]) -> None:
    messages_ = doc["components"]["messages"]
    live = messages_["roomTraffic"]["headers"]
    assert live["required"] == [ORIGIN_HEADER] and EXCLUDE_HEADER in live["properties"]
    stored = messages_["storedChatMessage"]["headers"]["properties"]
    assert {ORIGIN_HEADER, TIME_HEADER, ID_HEADER, MSG_ID_HEADER} <= set(stored)
    republished = messages_["republishedChatMessage"]["headers"]["properties"]
    assert {SEQUENCE_HEADER, LAST_SEQUENCE_HEADER} <= set(republished)
