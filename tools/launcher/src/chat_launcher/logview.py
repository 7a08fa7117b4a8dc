"""Children's log lines, made readable for a person and safe to show (pure: no I/O).

Each service logs one JSON object per line. The launcher re-prints it as
``rooms | service.ready port=9101 ttl_s=10.0``: the event, the level when it is
not ``info``, then the other fields. A field whose name looks like a credential
(token, secret, password...) is dropped entirely, and URL query strings are cut,
so that nothing a client could authenticate with reaches the terminal. A line that
is not a JSON object is shown as it is (query strings cut too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["Record", "is_secret_key", "parse", "ready_port", "render"]

#: A parsed line: a JSON object, or the raw text of anything else.
Record = dict[str, Any] | str

#: A field is hidden when its lower-cased name contains one of these.
_SECRET_WORDS: Final = ("token", "secret", "password", "passwd", "authorization", "cookie")
#: Fields shown in the line's head, or too noisy to repeat on every line.
_HEAD_KEYS: Final = frozenset({"event", "level", "timestamp", "logger", "exception"})
#: A URL query string ("?key=value..."): it may carry a token (same rule as chat_runtime.logs).
_QUERY: Final = re.compile(r"\?[\w.~%-]+=[^\s\"']*")
#: Values made only of these need no quotes in ``key=value``.
_BARE: Final = re.compile(r"^[\w.:/@+-]+\Z")


def is_secret_key(key: str) -> bool:
    """Whether a field named ``key`` may hold a credential and must never be shown."""
    lowered = key.lower()
    return lowered == "query_string" or any(word in lowered for word in _SECRET_WORDS)


def parse(line: bytes) -> Record:
    """Decode one log line: a dict for a JSON object, else the text without its newline."""
    text = line.decode(errors="replace").rstrip("\r\n")
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if isinstance(value, dict):
            return value
    return text


def ready_port(record: Record) -> int | None:
    """The port of a ``service.ready`` event, or ``None`` for any other line."""
    if isinstance(record, dict) and record.get("event") == "service.ready":
        port = record.get("port")
        if isinstance(port, int) and not isinstance(port, bool):
            return port
    return None


def render(name: str, record: Record) -> list[str]:
    """The lines to print for one record, each prefixed with ``name | ``.

    Args:
        name: The child's name, padded by the caller if columns should align.
        record: What :func:`parse` returned.

    Returns:
        One line, plus one per line of an exception's traceback.
    """
    if isinstance(record, str):
        return [f"{name} | {_cut_query(record)}"]
    head = _cut_query(str(record.get("event", "")))
    level = str(record.get("level", "info")).lower()
    if level not in ("info", "debug"):
        head = f"{level.upper()} {head}"
    fields = " ".join(f"{key}={_show(value)}" for key, value in _visible(record).items())
    lines = [f"{name} | {head} {fields}".rstrip()]
    exception = record.get("exception")
    if isinstance(exception, str):
        lines += [f"{name} |   {_cut_query(part)}" for part in exception.splitlines()]
    return lines


def _visible(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.items()
        if key not in _HEAD_KEYS and not is_secret_key(key)
    }


def _show(value: Any) -> str:
    if isinstance(value, str):
        value = _cut_query(value)
        return value if _BARE.match(value) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict | list):
        return _cut_query(json.dumps(_scrub(value), ensure_ascii=False, separators=(",", ":")))
    return json.dumps(value)


def _scrub(value: Any) -> Any:
    """Drop credential-looking keys at any depth of a nested field."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if not is_secret_key(str(k))}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _cut_query(text: str) -> str:
    return _QUERY.sub("?[redacted]", text) if "?" in text else text
