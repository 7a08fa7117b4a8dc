"""Log redaction: no query string and no secret-looking field ever reaches a log line."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from chat_runtime.logs import configure_logging, redact

SECRET = "eyJhbGciOiJIUzI1NiJ9.SECRET.SIG"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"/ws/chat/general?token={SECRET}", id="plain"),
        pytest.param(f"/ws/chat/general?&token={SECRET}", id="leading-ampersand"),
        pytest.param(f"/ws/chat/general?debug&token={SECRET}", id="flag-first"),
        pytest.param(f"/ws/chat/general?user=ann&token={SECRET}", id="second-key"),
        pytest.param(f"/ws/chat/general?{SECRET}", id="bare-value"),
    ],
)
def test_query_strings_of_any_shape_are_redacted(path: str) -> None:
    event = redact(None, "info", {"event": "x", "path": path})
    assert SECRET not in event["path"]
    assert event["path"].startswith("/ws/chat/general?")


def test_uvicorn_access_lines_lose_their_query_string() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    try:
        configure_logging("info", "json")
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        logging.getLogger("uvicorn.error").info(
            '%s - "WebSocket %s" [accepted]', "1.2.3.4:5", f"/ws/chat/general?&token={SECRET}"
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        structlog.reset_defaults()
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert SECRET not in json.dumps(line)
    assert "/ws/chat/general?[redacted]" in line["event"]


@pytest.mark.parametrize("key", ["token", "Password", "secret", "authorization", "query_string"])
def test_secret_looking_fields_are_redacted(key: str) -> None:
    assert redact(None, "info", {"event": "x", key: SECRET})[key] == "[redacted]"
