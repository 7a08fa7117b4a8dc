"""WebSocket close codes: the library's table, which applications extend.

RFC 6455 codes keep their RFC meaning. Application codes follow one rule,
borrowed from Centrifuge: ``4000-4499`` means "something went wrong, the client
may reconnect"; ``4500-4999`` means "terminal, do not reconnect as is".

This is the one table of the codes the library sends, and :func:`is_reconnectable`
is the one place the reconnect rule is written. An application does not copy
either. An ``IntEnum`` with members cannot be subclassed, so an application that
needs codes of its own re-exports :class:`CloseCode` and declares *only* its own
codes in a second ``IntEnum``, with values in the two application ranges that
this table does not use (:func:`check_application_codes` checks that once, at
import). Because the rule is a property of the value, :func:`is_reconnectable`
answers for those codes as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Final

__all__ = [
    "ReceivedCloseCode",
    "RECONNECTABLE",
    "TERMINAL",
    "CloseCode",
    "check_application_codes",
    "is_reconnectable",
]

#: Application codes after which a client may reconnect (after a back-off).
RECONNECTABLE: Final = range(4000, 4500)
#: Application codes after which a client must not reconnect as it is.
TERMINAL: Final = range(4500, 5000)


class CloseCode(IntEnum):
    """Close codes the library sends on its own initiative."""

    #: The connection did its job and is finished (RFC 6455).
    NORMAL = 1000
    #: The server is going away for good on this address (RFC 6455).
    GOING_AWAY = 1001
    #: The peer broke the WebSocket protocol (RFC 6455): an unmasked client frame,
    #: reserved bits, a control frame over 125 bytes. Sent by the server below us.
    PROTOCOL_ERROR = 1002
    #: A text frame was not valid UTF-8 (RFC 6455). Sent by the server below us.
    INVALID_FRAME_PAYLOAD = 1007
    #: The client broke a rule of the protocol or of the application (RFC 6455).
    #: Sent when ``on_connect`` refuses a connection, which the server turns into
    #: an HTTP 403 answer to the handshake.
    POLICY_VIOLATION = 1008
    #: A frame was larger than the server accepts (RFC 6455).
    MESSAGE_TOO_BIG = 1009
    #: The server hit an unexpected condition; no detail is given to the client (RFC 6455).
    INTERNAL_ERROR = 1011
    #: The server is restarting; reconnect after a short back-off (RFC 6455 registry).
    SERVICE_RESTART = 1012
    #: The client did not read fast enough: its bounded outbound queue overflowed.
    SLOW_CONSUMER = 4001
    #: The connection outlived its credentials (a token's ``exp``): reconnect with
    #: fresh ones.
    CREDENTIALS_EXPIRED = 4002
    #: The server could not give this connection a durable room's messages
    #: exactly once (its link to the broker lost some, or the room was too busy
    #: while its history was read): reconnect and resume from the last position seen.
    RESYNC = 4003
    #: An operator removed this identity (a kick, a revocation): do not reconnect
    #: with the same credentials.
    KICKED = 4501


class ReceivedCloseCode(IntEnum):
    """Codes that describe how a connection ended but are never sent (RFC 6455 7.4.1).

    ``on_disconnect`` receives them when the peer gave no code or vanished.
    """

    #: The peer's close frame carried no status code.
    NO_STATUS = 1005
    #: The connection was lost without a close frame.
    ABNORMAL_CLOSURE = 1006


#: RFC codes that describe a transient condition. 1013 ("try again later") is not
#: one the library sends, but a proxy in front of it may.
_TRANSIENT_RFC: Final = frozenset(
    {CloseCode.GOING_AWAY, CloseCode.INTERNAL_ERROR, CloseCode.SERVICE_RESTART, 1013}
)


def is_reconnectable(code: int) -> bool:
    """Tell whether a client that was closed with ``code`` should try to reconnect.

    Args:
        code: A WebSocket close code, the library's or an application's.

    Returns:
        ``True`` for codes that describe a transient condition (1001, 1011, 1012,
        1013 and the 4000-4499 range), ``False`` otherwise.
    """
    return code in _TRANSIENT_RFC or code in RECONNECTABLE


def check_application_codes(codes: Iterable[IntEnum]) -> None:
    """Check an application's own close codes against this table.

    Args:
        codes: The application's codes (iterate its ``IntEnum``).

    Raises:
        ValueError: A code lies outside ``4000-4999``, or reuses a value or a name
            of :class:`CloseCode`.
    """
    taken = {int(library): library.name for library in CloseCode}
    for code in codes:
        if code not in RECONNECTABLE and code not in TERMINAL:
            raise ValueError(f"{code.name} = {int(code)}: application codes are 4000-4999")
        if int(code) in taken:
            raise ValueError(f"{code.name} = {int(code)} is {taken[int(code)]} already")
        if code.name in CloseCode.__members__:
            raise ValueError(f"{code.name} names a library code already")
