"""WebSocket close codes used by falcon_pachinko itself.

RFC 6455 codes keep their RFC meaning. Application codes follow one rule,
borrowed from Centrifuge: ``4000-4499`` means "something went wrong, the client
may reconnect"; ``4500-4999`` means "terminal, do not reconnect as is".
Applications extend this table with their own codes in the same ranges.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "is_reconnectable"]


class CloseCode(IntEnum):
    """Close codes the library sends on its own initiative."""

    #: The connection did its job and is finished (RFC 6455).
    NORMAL = 1000
    #: The server is going away for good on this address (RFC 6455).
    GOING_AWAY = 1001
    #: The client broke a rule of the protocol or of the application (RFC 6455).
    POLICY_VIOLATION = 1008
    #: A frame was larger than the server accepts (RFC 6455).
    MESSAGE_TOO_BIG = 1009
    #: The server hit an unexpected condition; no detail is given to the client (RFC 6455).
    INTERNAL_ERROR = 1011
    #: The server is restarting; reconnect after a short back-off (RFC 6455 registry).
    SERVICE_RESTART = 1012
    #: The client did not read fast enough: its bounded outbound queue overflowed.
    SLOW_CONSUMER = 4001


def is_reconnectable(code: int) -> bool:
    """Tell whether a client that was closed with ``code`` should try to reconnect.

    Args:
        code: A WebSocket close code.

    Returns:
        ``True`` for codes that describe a transient condition (1001, 1011, 1012,
        1013 and the 4000-4499 range), ``False`` otherwise.
    """
    return code in (1001, 1011, 1012, 1013) or 4000 <= code <= 4499
