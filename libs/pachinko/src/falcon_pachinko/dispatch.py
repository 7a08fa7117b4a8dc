"""Message handlers: declaration, registry, and the decision of where a frame goes.

Everything here is pure: a frame goes in, a :class:`Decision` comes out. The
resource's receive loop performs the decision (awaits a handler or a hook).

A frame is dispatched when it is JSON, an object, with a string ``type`` that has a
handler. The handler's ``payload`` annotation says how the payload is decoded:

* a ``msgspec.Struct`` subclass: decoded and validated; unknown fields are
  rejected when the handler is ``strict`` (the default) and ignored otherwise
  (a struct declared with ``forbid_unknown_fields=True`` always rejects them);
* ``dict``: any JSON object, ``{}`` when the message has no payload;
* no annotation (or ``Any``): any JSON value, ``{}`` when absent.

A resource class may also set ``schema`` to a msgspec tagged union (with
``tag_field="type"``) of whole messages; a handler whose type is one of its tags
then receives the decoded message struct itself as ``payload``.

Each frame is parsed once on the way to its handler: a resource with a ``schema``
decodes its frames with one decoder for the whole union; other frames are decoded
as an envelope whose payload is kept raw (``msgspec.Raw``) and decoded only into
the handler's type. Only a frame the schema rejects is read again, to tell an
unknown type (:class:`Unhandled`) from an invalid message (:class:`Invalid`).

Nesting deeper than msgspec's recursion guard allows (about a thousand levels,
less when the stack is already deep) is bad input like any other: it becomes
:class:`Unhandled`, or :class:`Invalid` when the type was read already.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import msgspec

from .errors import HandlerConfigurationError

__all__ = [
    "Decision",
    "Dispatch",
    "HandlerSpec",
    "Handlers",
    "Invalid",
    "Unhandled",
    "build_registry",
    "decide",
    "handles_message",
]

_HANDLES_ATTR: Final = "__pachinko_handles__"
_EMPTY_OBJECT: Final = b"{}"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class _Envelope(msgspec.Struct):
    """The outer shape every dispatched message has. Other keys are ignored."""

    type: str
    payload: msgspec.Raw = msgspec.Raw(_EMPTY_OBJECT)


_envelope_decoder: Final = msgspec.json.Decoder(_Envelope)


def handles_message(message_type: str, *, strict: bool = True) -> Callable[[F], F]:
    """Declare the decorated coroutine method the handler of ``message_type``.

    The handler is called as ``await handler(self, ws, payload)``.

    Args:
        message_type: The value of the message's ``type`` field.
        strict: For a ``msgspec.Struct`` payload, reject unknown fields and
            mismatched types (``True``), or ignore unknown fields and convert
            compatible values such as ``"1"`` to ``1`` (``False``).

    Raises:
        HandlerConfigurationError: ``message_type`` is empty or the decorated
            object is not a coroutine function.
    """
    if not isinstance(message_type, str) or not message_type:
        raise HandlerConfigurationError("message_type must be a non-empty string")

    def decorate(func: F) -> F:
        if not _is_coroutine_function(func):
            raise HandlerConfigurationError(
                f"handler for {message_type!r} must be an 'async def' method"
            )
        setattr(func, _HANDLES_ATTR, (message_type, strict))
        return func

    return decorate


def _is_coroutine_function(obj: object) -> bool:
    # A plain bool (not inspect's TypeGuard) keeps the decorated type intact.
    return inspect.iscoroutinefunction(obj)


class HandlerSpec(msgspec.Struct, frozen=True):
    """How to call the handler of one message type.

    Attributes:
        attr: The handler's attribute name on the resource.
        decoder: Decodes the payload (or the whole message) to its declared type.
        whole_message: Decode the whole frame (``schema`` handlers).
        known_fields: When set, payload keys outside it are rejected; used for
            strict handlers whose struct does not itself forbid unknown fields.
    """

    attr: str
    decoder: msgspec.json.Decoder[Any]
    whole_message: bool = False
    known_fields: frozenset[str] | None = None


class Dispatch(msgspec.Struct, frozen=True):
    """Call ``getattr(resource, attr)(ws, payload)``."""

    message_type: str
    attr: str
    payload: Any


class Unhandled(msgspec.Struct, frozen=True):
    """Not JSON, not an object with a string ``type``, or no handler for it."""


class Invalid(msgspec.Struct, frozen=True):
    """A handled message type whose content failed validation."""

    message_type: str
    error: msgspec.ValidationError


Decision = Dispatch | Unhandled | Invalid


class Handlers(dict[str, HandlerSpec]):
    """A resource class's handlers by message type, plus its schema's decoder.

    Attributes:
        schema_decoder: Decodes a whole message of the class's ``schema`` union in
            one pass; ``None`` when the class has no schema.
    """

    schema_decoder: msgspec.json.Decoder[Any] | None = None


def build_registry(cls: type) -> Handlers:
    """Collect the handlers of ``cls``: its own, plus those it inherits.

    A subclass's handler for a type replaces the inherited one. A method that
    overrides an inherited handler by name, without re-declaring it, stays the
    handler for that type.

    Raises:
        HandlerConfigurationError: Two methods of ``cls`` itself handle one type.
    """
    inherited: dict[str, str] = {}
    for base in reversed(cls.__mro__[1:]):
        for message_type, spec in getattr(base, "_pachinko_handlers", {}).items():
            inherited[message_type] = spec.attr
    own: dict[str, str] = {}
    for attr, value in vars(cls).items():
        marker = getattr(value, _HANDLES_ATTR, None)
        if marker is None:
            continue
        message_type = marker[0]
        if message_type in own:
            raise HandlerConfigurationError(
                f"{cls.__qualname__}: both {own[message_type]!r} and {attr!r} handle "
                f"message type {message_type!r}"
            )
        own[message_type] = attr
    names = inherited | own
    whole = _schema_types(cls)
    handlers = Handlers(
        (message_type, _spec(cls, message_type, attr, whole))
        for message_type, attr in names.items()
    )
    schema = getattr(cls, "schema", None)
    if schema is not None:
        handlers.schema_decoder = msgspec.json.Decoder(schema)
    return handlers


def _schema_types(cls: type) -> dict[str, msgspec.json.Decoder[Any]]:
    schema = getattr(cls, "schema", None)
    if schema is None:
        return {}
    members = typing.get_args(schema) or (schema,)
    decoders: dict[str, msgspec.json.Decoder[Any]] = {}
    for member in members:
        info = msgspec.inspect.type_info(member)
        if not isinstance(info, msgspec.inspect.StructType) or info.tag is None:
            raise HandlerConfigurationError(
                f"{cls.__qualname__}.schema must be a union of tagged msgspec Structs"
            )
        if info.tag_field != "type":
            raise HandlerConfigurationError(
                f"{cls.__qualname__}.schema structs must use tag_field='type'"
            )
        decoders[str(info.tag)] = msgspec.json.Decoder(member)
    return decoders


def _spec(
    cls: type, message_type: str, attr: str, whole: Mapping[str, msgspec.json.Decoder[Any]]
) -> HandlerSpec:
    if message_type in whole:
        return HandlerSpec(attr=attr, decoder=whole[message_type], whole_message=True)
    func = getattr(cls, attr)
    marker = getattr(func, _HANDLES_ATTR, None)
    strict = marker[1] if marker is not None else True
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:  # noqa: BLE001 - surfaced as a configuration error
        raise HandlerConfigurationError(
            f"{cls.__qualname__}.{attr}: cannot resolve type hints ({exc})"
        ) from exc
    annotation = hints.get("payload", Any)
    return HandlerSpec(
        attr=attr,
        decoder=msgspec.json.Decoder(annotation, strict=strict),
        known_fields=_known_fields(annotation) if strict else None,
    )


def _known_fields(annotation: Any) -> frozenset[str] | None:
    if not (isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)):
        return None
    config = annotation.__struct_config__
    if config.forbid_unknown_fields:
        return None  # msgspec enforces it already
    names = set(annotation.__struct_encode_fields__)
    if config.tag_field is not None:
        names.add(config.tag_field)
    return frozenset(names)


_keys_decoder: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _check_known_fields(raw: msgspec.Raw, known: frozenset[str]) -> None:
    # The payload already decoded as the struct, so it is an object. Checking keys
    # separately (instead of deriving a stricter struct) keeps the payload an
    # instance of exactly the declared class, so == and type() behave.
    for key in _keys_decoder.decode(raw):
        if key not in known:
            raise msgspec.ValidationError(f"Object contains unknown field `{key}` - at `$`")


def decide(registry: Mapping[str, HandlerSpec], frame: str | bytes) -> Decision:
    """Decide what happens to one received frame.

    Args:
        registry: The resource class's handlers (:func:`build_registry`).
        frame: The frame's text or bytes, as received.

    Returns:
        A :class:`Dispatch`, or :class:`Unhandled` / :class:`Invalid` for bad
        input of any shape. It never raises because of the frame's content.
    """
    schema_decoder = getattr(registry, "schema_decoder", None)
    if schema_decoder is None:
        return _decide_enveloped(registry, frame, None)
    try:
        message = schema_decoder.decode(frame)
    except msgspec.ValidationError as exc:
        # Not a valid schema message; it may still be another handler's type.
        return _decide_enveloped(registry, frame, exc)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        return Unhandled()
    message_type = str(type(message).__struct_config__.tag)
    spec = registry.get(message_type)
    if spec is None:
        return Unhandled()
    return Dispatch(message_type=message_type, attr=spec.attr, payload=message)


def _decide_enveloped(
    registry: Mapping[str, HandlerSpec],
    frame: str | bytes,
    schema_error: msgspec.ValidationError | None,
) -> Decision:
    try:
        envelope = _envelope_decoder.decode(frame)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        return Unhandled()
    spec = registry.get(envelope.type)
    if spec is None:
        return Unhandled()
    if spec.whole_message and schema_error is not None:
        return Invalid(message_type=envelope.type, error=schema_error)
    try:
        payload = spec.decoder.decode(frame if spec.whole_message else envelope.payload)
        if spec.known_fields is not None:
            _check_known_fields(envelope.payload, spec.known_fields)
    except msgspec.ValidationError as exc:
        return Invalid(message_type=envelope.type, error=exc)
    except RecursionError:
        error = msgspec.ValidationError("Object nested too deeply to decode - at `$`")
        return Invalid(message_type=envelope.type, error=error)
    except msgspec.DecodeError as exc:  # pragma: no cover - the envelope parsed already
        return Invalid(message_type=envelope.type, error=msgspec.ValidationError(str(exc)))
    return Dispatch(message_type=envelope.type, attr=spec.attr, payload=payload)
