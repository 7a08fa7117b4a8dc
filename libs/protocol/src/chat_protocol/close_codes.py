"""Every WebSocket close code the chat uses: falcon_pachinko's table, extended.

The library's :class:`falcon_pachinko.close_codes.CloseCode` is the single source of
the codes the chat shares with it, and :func:`falcon_pachinko.close_codes.is_reconnectable`
is the single reconnect rule; both are re-exported here unchanged, so the chat and
the library can never disagree on a value. An ``IntEnum`` with members cannot be
subclassed, so the chat's own codes, if it ever needs any, go in
:class:`ChatCloseCode`, and only there: ``4000-4499`` for conditions after which
the client may reconnect (after a back-off), ``4500-4999`` for terminal ones, never
a value or a name the library uses (checked at import). RFC 6455 codes keep their
RFC meaning.

Handshake rejections are not close codes: a page of a foreign origin, an
unauthenticated client, a room name that is not valid or a room the token does
not permit gets HTTP 403 and no WebSocket at all.

| code | name | reconnect | when |
|------|------|-----------|------|
| 1000 | NORMAL | no | the client or server ended the session normally |
| 1001 | GOING_AWAY | yes | the server is going away |
| 1008 | POLICY_VIOLATION | no | flooding past the message budget; at a handshake, HTTP 403 |
| 1009 | MESSAGE_TOO_BIG | no, not as is | a frame exceeded ``CHAT_WS_MAX_BYTES`` |
| 1011 | INTERNAL_ERROR | yes | an unexpected server fault (no detail is given) |
| 1012 | SERVICE_RESTART | yes | the gateway is shutting down or restarting |
| 1002 | PROTOCOL_ERROR | no, not as is | the client broke RFC 6455 framing (see the README) |
| 1007 | INVALID_FRAME_PAYLOAD | no, not as is | a text frame was not valid UTF-8 |
| 4001 | SLOW_CONSUMER | yes | the client did not read fast enough; its outbound queue overflowed |
| 4002 | CREDENTIALS_EXPIRED | yes, with a fresh token | the token expired while connected |
| 4003 | RESYNC | yes, with ``?since=`` | messages could not all be given exactly once (below) |
| 4501 | KICKED | no, not with the same token | an operator removed the user (``chat kick``) |

RESYNC (4003): the gateway's NATS link lost some of a room's messages, the room
was too busy while this client's history was read, or the history could not be
read; the client reconnects with ``?since=`` and gets exactly what it missed.

The chat has no code of its own today: every row above is the library's.
"""

from __future__ import annotations

from enum import IntEnum

from falcon_pachinko.close_codes import CloseCode, check_application_codes, is_reconnectable

__all__ = ["ChatCloseCode", "CloseCode", "is_reconnectable"]


class ChatCloseCode(IntEnum):
    """Close codes only the chat sends (none yet). Add rows to the table above too."""


check_application_codes(ChatCloseCode)
