"""Errors of the gateway.

::

    ChatError(Exception)                      (chat_protocol.errors)
    └── KeysUnavailable(ChatError, ConnectionError)
            the issuer's JWK Set could not be fetched and the token's key is not
            known: the handshake is answered 503 (retry), not 403
"""

from __future__ import annotations

from chat_protocol.errors import ChatError

__all__ = ["KeysUnavailable"]


class KeysUnavailable(ChatError, ConnectionError):
    """The keys that would verify a token cannot be had now (the JWKS is unreachable)."""
