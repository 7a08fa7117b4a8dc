"""The document's schemas: msgspec's JSON Schema of every struct, fit for AsyncAPI 3.0.

Every payload schema comes from :func:`msgspec.json.schema_components` over the
structs themselves, so field names are those on the wire (``clientMsgId``) and
every ``msgspec.Meta`` constraint (lengths, bounds, patterns) comes through. What msgspec
writes differently from what AsyncAPI 3.0 reads is rewritten, and one thing
added:

* An ``array_like`` struct's items have no names in JSON Schema; its description
  names them, in order.
* msgspec emits JSON Schema 2020-12; an AsyncAPI Schema Object is a superset of
  draft 07. The one 2020-12 keyword the structs produce is ``prefixItems`` (an
  ``array_like`` struct: a membership ``Change``), which draft 07 spells ``items``.
* Patterns are Python regular expressions. The protocol anchors them with ``\\Z``
  (``$`` would accept a trailing newline in Python); in ECMA 262, which JSON
  Schema patterns follow, ``$`` without the multiline flag already means the end
  of the input, and ``\\Z`` means nothing. So a final ``\\Z`` becomes ``$``.

``serverError``'s ``code`` is a plain string in the struct; the document lists
its values (:data:`ERROR_CODES`) as an ``enum``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from ..messages import ErrorCode
from ..names import RoomName, UserName

__all__ = ["ERROR_CODES", "REF", "component_schemas", "ecma_pattern", "error_codes", "ref"]

#: Where a struct's schema lives in the document.
REF: Final = "#/components/schemas/{name}"

#: What each ``serverError`` code means. Every :class:`ErrorCode` needs a line
#: here: the document cannot be generated without it.
ERROR_CODES: Final[Mapping[str, str]] = {
    ErrorCode.UNRECOGNIZED: "the frame is not JSON, has no `type`, or its type is unknown",
    ErrorCode.INVALID_PAYLOAD: (
        "a known type whose payload fails validation: unknown fields, wrong types, "
        "empty or too long text"
    ),
    ErrorCode.INTERNAL: "a server fault; no details are given",
    ErrorCode.UNAVAILABLE: (
        "NATS or the history store could not take the message, or the history could "
        "not be read: try again (a `clientSendMessage` with the same `clientMsgId`)"
    ),
    ErrorCode.RATE_LIMITED: (
        "the client is over its message budget (`CHAT_RATE_PER_S`, `CHAT_RATE_BURST`): "
        "the message was not sent to anyone; every message type counts, typing included"
    ),
}

_USER_NAME_NOTE: Final = (
    "A user name. `\\w` means a Unicode letter, digit or `_` (Python's meaning, "
    "letters of any script), not ASCII only."
)


def ref(name: str) -> dict[str, str]:
    """A reference to the schema of the struct called ``name``."""
    return {"$ref": REF.format(name=name)}


def ecma_pattern(pattern: str) -> str:
    """``pattern`` (a protocol regular expression) as a JSON Schema pattern says it."""
    return re.sub(r"\\Z$", "$", pattern)


def error_codes() -> dict[str, str]:
    """Every ``serverError`` code with its meaning, in :class:`ErrorCode`'s order.

    Raises:
        ValueError: A code has no meaning in :data:`ERROR_CODES`.
    """
    codes = [value for name, value in vars(ErrorCode).items() if name.isupper()]
    missing = [code for code in codes if code not in ERROR_CODES]
    if missing:
        raise ValueError(f"serverError codes without a meaning in ERROR_CODES: {missing}")
    return {code: ERROR_CODES[code] for code in codes}


def component_schemas(types: Iterable[Any]) -> dict[str, Any]:
    """The schema of every struct in ``types`` and of every struct they contain.

    Returns:
        The schemas by struct name, sorted by name, plus ``RoomName`` and
        ``UserName``, in the dialect AsyncAPI 3.0 reads.
    """
    types = tuple(types)
    _, components = msgspec.json.schema_components(types, ref_template=REF)
    for struct in types:
        if getattr(getattr(struct, "__struct_config__", None), "array_like", False):
            # An array-like struct's items have no names on the wire: say which is which.
            schema = components[struct.__name__]
            fields = ", ".join(f"`{name}`" for name in struct.__struct_encode_fields__)
            schema["description"] = f"{schema.get('description', '')} Items: {fields}.".strip()
    components["RoomName"] = {
        "title": "RoomName",
        "description": "A room name: safe in a NATS subject, a URL path segment and a log line.",
        **msgspec.json.schema(RoomName),
    }
    components["UserName"] = {
        "title": "UserName",
        "description": _USER_NAME_NOTE,
        **msgspec.json.schema(UserName),
    }
    codes = error_codes()
    error = components["ErrorPayload"]["properties"]["code"]
    error["enum"] = list(codes)
    error["description"] = "Why: " + "; ".join(f"`{c}`: {m}" for c, m in codes.items()) + "."
    return {name: _draft07(components[name]) for name in sorted(components)}


def _draft07(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_draft07(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "prefixItems":
            out["items"] = _draft07(value)
        elif key == "pattern" and isinstance(value, str):
            out[key] = ecma_pattern(value)
        elif key in ("properties", "$defs"):
            # Keys here are field names, not keywords: only their values are schemas.
            out[key] = {name: _draft07(sub) for name, sub in value.items()}
        elif key in ("default", "enum", "examples", "const"):
            out[key] = value  # values, not schemas
        else:
            out[key] = _draft07(value)
    return out
