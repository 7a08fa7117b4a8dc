"""Every WebSocket close code the chat uses, in one table.

RFC 6455 codes keep their RFC meaning. Application codes: ``4000-4499`` means the
client may reconnect (after a back-off); ``4500-4999`` means terminal.

Handshake rejections are not close codes: an unauthenticated client, or a room
name that is not valid, gets HTTP 403 and no WebSocket at all.

| code | name | reconnect | when |
|------|------|-----------|------|
| 1000 | NORMAL | no | the client or server ended the session normally |
| 1001 | GOING_AWAY | yes | the server is going away |
| 1009 | MESSAGE_TOO_BIG | no, not as is | a frame exceeded ``CHAT_WS_MAX_BYTES`` |
| 1011 | INTERNAL_ERROR | yes | an unexpected server fault (no detail is given) |
| 1012 | SERVICE_RESTART | yes | the gateway is shutting down or restarting |
| 4001 | SLOW_CONSUMER | yes | the client did not read fast enough; its outbound queue overflowed |
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "is_reconnectable"]


class CloseCode(IntEnum):
    """Close codes of the chat. See the module docstring for the table."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    SLOW_CONSUMER = 4001


def is_reconnectable(code: int) -> bool:
    """Whether a client closed with ``code`` should reconnect after a back-off."""
    return code in (1001, 1011, 1012, 1013) or 4000 <= code <= 4499
