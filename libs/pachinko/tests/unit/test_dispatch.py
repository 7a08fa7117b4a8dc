"""Handler declaration and the dispatch decision: pure, no sockets."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from falcon_pachinko import HandlerConfigurationError, WebSocketResource, dispatch, handles_message
from falcon_pachinko.dispatch import Dispatch, Invalid, Unhandled, decide


class Greeting(msgspec.Struct, frozen=True):
    name: str
    times: int = 1


class Resource(WebSocketResource):
    @handles_message("greet")
    async def greet(self, ws: Any, payload: Greeting) -> None: ...

    @handles_message("greetLax", strict=False)
    async def greet_lax(self, ws: Any, payload: Greeting) -> None: ...

    @handles_message("raw")
    async def raw(self, ws: Any, payload: dict) -> None: ...  # type: ignore[type-arg]

    @handles_message("anything")
    async def anything(self, ws, payload): ...  # type: ignore[no-untyped-def]


def decide_for(frame: str | bytes, cls: type[WebSocketResource] = Resource) -> Any:
    return decide(cls._pachinko_handlers, frame)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("[1, 2]", id="array"),
        pytest.param('"greet"', id="string"),
        pytest.param("{}", id="no-type"),
        pytest.param('{"type": 3}', id="type-not-string"),
        pytest.param('{"type": "nope"}', id="no-handler"),
        pytest.param(b"\xff\xfe", id="binary-not-utf8"),
        pytest.param("", id="empty"),
    ],
)
def test_frames_that_are_not_handled_messages_are_unhandled(frame: str | bytes) -> None:
    assert decide_for(frame) == Unhandled()


def test_struct_payload_is_decoded_and_validated() -> None:
    decision = decide_for('{"type": "greet", "payload": {"name": "Ann", "times": 2}}')
    assert decision == Dispatch(message_type="greet", attr="greet", payload=Greeting("Ann", 2))
    assert isinstance(decision.payload, Greeting)


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        pytest.param(
            '{"type": "greet", "payload": {"name": 1}}', "Expected `str`", id="wrong-type"
        ),
        pytest.param('{"type": "greet", "payload": {}}', "missing required field", id="missing"),
        pytest.param('{"type": "greet"}', "missing required field", id="no-payload"),
        pytest.param(
            '{"type": "greet", "payload": {"name": "A", "x": 1}}', "unknown field", id="unknown"
        ),
        pytest.param('{"type": "greet", "payload": {"name": "A", "times": "2"}}', "int", id="lax"),
    ],
)
def test_strict_handlers_reject_invalid_payloads(frame: str, fragment: str) -> None:
    decision = decide_for(frame)
    assert isinstance(decision, Invalid)
    assert decision.message_type == "greet"
    assert fragment in str(decision.error)


def test_non_strict_handlers_ignore_unknown_fields_and_convert() -> None:
    decision = decide_for('{"type": "greetLax", "payload": {"name": "A", "times": "2", "x": 1}}')
    assert isinstance(decision, Dispatch)
    assert decision.payload == Greeting("A", 2)


def test_strictness_keeps_the_declared_struct_class() -> None:
    decision = decide_for('{"type": "greet", "payload": {"name": "A"}}')
    assert type(decision.payload) is Greeting
    assert Greeting.__struct_config__.forbid_unknown_fields is False
    assert msgspec.json.decode(b'{"name": "A", "x": 1}', type=Greeting) == Greeting("A")


def test_dict_payload_defaults_to_empty_object() -> None:
    assert decide_for('{"type": "raw"}') == Dispatch("raw", "raw", {})
    assert decide_for('{"type": "raw", "payload": {"a": [1]}}').payload == {"a": [1]}
    assert isinstance(decide_for('{"type": "raw", "payload": [1]}'), Invalid)


def test_unannotated_payload_accepts_any_json() -> None:
    assert decide_for('{"type": "anything", "payload": [1, "x"]}').payload == [1, "x"]
    assert decide_for('{"type": "anything"}').payload == {}


def test_extra_envelope_keys_are_ignored() -> None:
    decision = decide_for('{"id": 7, "type": "raw", "payload": {}}')
    assert isinstance(decision, Dispatch)


def test_binary_frames_holding_json_are_dispatched_like_text() -> None:
    assert isinstance(decide_for(b'{"type": "raw"}'), Dispatch)


class Ping(msgspec.Struct, tag="ping", tag_field="type", forbid_unknown_fields=True):
    seq: int


class Pong(msgspec.Struct, tag="pong", tag_field="type"):
    seq: int


class SchemaResource(WebSocketResource):
    schema = Ping | Pong

    @handles_message("ping")
    async def on_ping(self, ws: Any, message: Ping) -> None: ...

    @handles_message("other")
    async def on_other(self, ws: Any, payload: dict) -> None: ...  # type: ignore[type-arg]


def test_schema_dispatches_whole_typed_messages() -> None:
    decision = decide_for('{"type": "ping", "seq": 3}', SchemaResource)
    assert decision == Dispatch("ping", "on_ping", Ping(seq=3))
    invalid = decide_for('{"type": "ping", "seq": "x"}', SchemaResource)
    assert isinstance(invalid, Invalid) and "$.seq" in str(invalid.error)
    # In the schema but without a handler: unhandled. Not in the schema: per-handler.
    assert decide_for('{"type": "pong", "seq": 1}', SchemaResource) == Unhandled()
    assert decide_for('{"type": "other"}', SchemaResource).payload == {}


class CountingDecoder:
    """Wraps a decoder and counts the frames it reads."""

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder
        self.calls = 0

    def decode(self, frame: str | bytes) -> Any:
        self.calls += 1
        return self.decoder.decode(frame)


def test_a_schema_message_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    envelope = CountingDecoder(dispatch._envelope_decoder)
    monkeypatch.setattr(dispatch, "_envelope_decoder", envelope)
    whole = CountingDecoder(SchemaResource._pachinko_handlers["ping"].decoder)
    spec = SchemaResource._pachinko_handlers["ping"]
    monkeypatch.setitem(
        SchemaResource._pachinko_handlers, "ping", msgspec.structs.replace(spec, decoder=whole)
    )

    assert decide_for('{"type": "ping", "seq": 3}', SchemaResource).payload == Ping(seq=3)
    assert (envelope.calls, whole.calls) == (0, 0)  # only the schema's own decoder read it
    # A frame the schema rejects is read again, to tell unknown from invalid.
    assert isinstance(decide_for('{"type": "ping", "seq": "x"}', SchemaResource), Invalid)
    assert decide_for('{"type": "other"}', SchemaResource).payload == {}
    assert (envelope.calls, whole.calls) == (2, 0)


def test_schema_must_be_tagged_structs_on_type() -> None:
    with pytest.raises(HandlerConfigurationError, match="tag_field='type'"):

        class WrongTag(WebSocketResource):
            schema = msgspec.defstruct("M", [("a", int)], tag="m", tag_field="kind")

    with pytest.raises(HandlerConfigurationError, match="tagged msgspec Structs"):

        class NotTagged(WebSocketResource):
            schema = Greeting


def test_duplicate_handlers_are_an_error_at_class_creation() -> None:
    with pytest.raises(HandlerConfigurationError, match="both 'a' and 'b' handle"):

        class Duplicate(WebSocketResource):
            @handles_message("x")
            async def a(self, ws: Any, payload: dict) -> None: ...  # type: ignore[type-arg]

            @handles_message("x")
            async def b(self, ws: Any, payload: dict) -> None: ...  # type: ignore[type-arg]


def test_handlers_must_be_coroutines_and_types_non_empty() -> None:
    with pytest.raises(HandlerConfigurationError, match="async def"):
        handles_message("x")(lambda self, ws, payload: None)
    with pytest.raises(HandlerConfigurationError, match="non-empty"):
        handles_message("")


def test_unresolvable_annotations_are_reported_at_class_creation() -> None:
    with pytest.raises(HandlerConfigurationError, match="cannot resolve type hints"):

        class Broken(WebSocketResource):
            @handles_message("x")
            async def h(self, ws: Any, payload: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821


class Parent(WebSocketResource):
    @handles_message("a")
    async def handle_a(self, ws: Any, payload: dict) -> None: ...  # type: ignore[type-arg]

    @handles_message("b")
    async def handle_b(self, ws: Any, payload: dict) -> None: ...  # type: ignore[type-arg]


class Child(Parent):
    @handles_message("b")
    async def new_b(self, ws: Any, payload: Greeting) -> None: ...

    async def handle_a(self, ws: Any, payload: dict) -> None: ...  # type: ignore[type-arg]

    @handles_message("c")
    async def handle_c(self, ws: Any, payload: dict) -> None: ...  # type: ignore[type-arg]


def test_subclasses_inherit_and_override_handlers() -> None:
    assert set(Child._pachinko_handlers) == {"a", "b", "c"}
    assert Child._pachinko_handlers["b"].attr == "new_b"
    assert isinstance(decide_for('{"type": "b", "payload": {"name": "x"}}', Child), Dispatch)
    # The override by name stays the handler of "a".
    assert Child._pachinko_handlers["a"].attr == "handle_a"
    assert Child.handle_a is not Parent.handle_a
    # The parent is untouched.
    assert set(Parent._pachinko_handlers) == {"a", "b"}
    assert Parent._pachinko_handlers["b"].attr == "handle_b"


@given(st.one_of(st.binary(max_size=256), st.text(max_size=256)))
def test_any_frame_yields_a_decision_and_never_raises(frame: str | bytes) -> None:
    assert isinstance(decide_for(frame), Dispatch | Unhandled | Invalid)


def nested(openers: str, leaf: str = "1") -> str:
    """JSON text nesting ``leaf`` in ``openers`` (``[`` a list, ``{`` an object)."""
    closers = "".join("]" if o == "[" else "}" for o in reversed(openers))
    return "".join("[" if o == "[" else '{"k":' for o in openers) + leaf + closers


@pytest.mark.parametrize("depth", [1_000, 3_000, 100_000])
@pytest.mark.parametrize("opener", ["[", "{"], ids=["lists", "objects"])
@pytest.mark.parametrize("cls", [Resource, SchemaResource], ids=["handlers", "schema"])
def test_a_frame_nested_too_deep_to_decode_is_a_decision_not_an_exception(
    depth: int, opener: str, cls: type[WebSocketResource]
) -> None:
    # 1,000 levels fit in 2 KB; msgspec's decoder raises RecursionError on them.
    for message_type in ("greet", "ping", "anything", "nope"):
        frame = f'{{"type":"{message_type}","payload":{nested(opener * depth)}}}'
        assert isinstance(decide_for(frame, cls), Unhandled | Invalid)
    assert decide_for(nested(opener * depth), cls) == Unhandled()


#: Nesting from none to a few thousand levels, of lists and objects mixed.
deep_openers = st.integers(min_value=0, max_value=4_000).flatmap(
    lambda depth: st.text(alphabet="[{", min_size=depth, max_size=depth)
)


@given(
    openers=deep_openers,
    message_type=st.sampled_from(["greet", "greetLax", "raw", "anything", "nope", "ping"]),
    cls=st.sampled_from([Resource, SchemaResource]),
    tail=st.binary(max_size=16),
)
def test_any_nesting_depth_with_any_trailing_garbage_yields_a_decision(
    openers: str, message_type: str, cls: type[WebSocketResource], tail: bytes
) -> None:
    body = nested(openers)
    frame = f'{{"type":"{message_type}","payload":{body}}}'.encode()
    for candidate in (frame, frame + tail, frame[: len(frame) // 2] + tail, body.encode()):
        assert isinstance(decide_for(candidate, cls), Dispatch | Unhandled | Invalid)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_any_json_payload_for_a_typed_handler_is_dispatched_or_invalid(payload: Any) -> None:
    frame = msgspec.json.encode({"type": "greet", "payload": payload})
    decision = decide_for(frame)
    assert isinstance(decision, Dispatch | Invalid)
    if isinstance(decision, Dispatch):
        assert isinstance(decision.payload, Greeting)
