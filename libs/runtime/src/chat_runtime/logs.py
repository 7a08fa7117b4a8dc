"""Logging: structlog for our events, and the standard library's records (uvicorn's)
rendered the same way. Configured once, by the entrypoint."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

__all__ = ["configure_logging", "redact"]

# A URL query string, whatever its shape ("?token=", "?&token=", "?debug&token="):
# it may carry credentials, so all of it goes.
_QUERY: Final = re.compile(r"\?[^\s\"']+")
_SECRET_KEYS: Final = frozenset({"token", "password", "secret", "authorization", "query_string"})


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop secret-looking keys and strip query strings."""
    for key in list(event):
        value = event[key]
        if key.lower() in _SECRET_KEYS:
            event[key] = "[redacted]"
        elif isinstance(value, str) and "?" in value:
            event[key] = _QUERY.sub("?[redacted]", value)
    return event


class _RedactRecord(logging.Filter):
    """Strip query strings from standard-library records (uvicorn logs request paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                _QUERY.sub("?[redacted]", a) if isinstance(a, str) else a for a in args
            )
        if isinstance(record.msg, str):
            record.msg = _QUERY.sub("?[redacted]", record.msg)
        return True


class _DropDenialNoise(logging.Filter):
    """Drop uvicorn's false alarm after a handshake refused with an HTTP status.

    NOTE: uvicorn's websockets-sansio protocol does not mark the handshake done
    after a ``websocket.http.response`` denial, so it logs this at ERROR for every
    503 the gateway answers (https://github.com/Kludex/uvicorn/pull/3138). The
    library always ends a handshake (accept, close or denial), so the message
    says nothing here.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Send structlog and standard-library logs to stderr, one rendering for both."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactRecord())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    uvicorn_error = logging.getLogger("uvicorn.error")
    for old in [f for f in uvicorn_error.filters if isinstance(f, _DropDenialNoise)]:
        uvicorn_error.removeFilter(old)
    uvicorn_error.addFilter(_DropDenialNoise())
