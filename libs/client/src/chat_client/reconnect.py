"""When a chat client reconnects, and how long it waits first: pure rules.

* **After a close**, the close-code table decides
  (:func:`chat_protocol.close_codes.is_reconnectable`: 1001, 1011, 1012, 1013
  and 4000-4499), plus 1006, which no server sends: the connection was lost
  without a closing handshake (a crash, a network cut). 4002 (the token expired)
  is reconnectable only with a way to get a fresh token. Every other code is
  final: 1000, a policy violation (1008), a frame the gateway refused (1002,
  1007, 1009), and 4500-4999 (kicked: 4501).
* **After a refused handshake**, the HTTP status decides: 429 (too many
  connections for this user) and 5xx (not ready, draining, an identity provider
  away) are worth retrying; 4xx otherwise (403: not allowed, a bad room name or
  token) is final.
* **Waiting**: exponential back-off with full jitter, from ``base_s`` doubling up to
  ``cap_s``; a ``Retry-After`` the gateway gave is the least wait. The attempt
  count resets once a connection has been welcomed.
"""

from __future__ import annotations

import random
from typing import Final

from chat_protocol.close_codes import CloseCode, is_reconnectable

__all__ = ["ABNORMAL_CLOSURE", "Backoff", "Verdict", "after_close", "after_refusal"]

#: The code a client reports when the connection ended without a close frame.
ABNORMAL_CLOSURE: Final = 1006


class Verdict:
    """Why a client does or does not reconnect (a short, user-facing phrase)."""

    RECONNECT: Final = "reconnecting"
    TOKEN_EXPIRED: Final = "token expired"
    FINAL: Final = "closed"


def after_close(code: int | None, *, can_renew_token: bool) -> str:
    """The :class:`Verdict` after the server closed with ``code`` (``None``: no code)."""
    if code is None or code == ABNORMAL_CLOSURE:
        return Verdict.RECONNECT
    if code == CloseCode.CREDENTIALS_EXPIRED:
        return Verdict.RECONNECT if can_renew_token else Verdict.TOKEN_EXPIRED
    return Verdict.RECONNECT if is_reconnectable(code) else Verdict.FINAL


def after_refusal(status: int) -> str:
    """The :class:`Verdict` after the handshake was answered with HTTP ``status``."""
    return Verdict.RECONNECT if status == 429 or 500 <= status <= 599 else Verdict.FINAL


class Backoff:
    """Exponential back-off with full jitter.

    Args:
        base_s: The first attempt's bound.
        cap_s: No wait is longer (unless ``Retry-After`` says so).
        rng: Where the jitter comes from (seed it in tests).
    """

    def __init__(
        self, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng if rng is not None else random.Random()

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """How long to wait before the next attempt; counts the attempt."""
        bound = min(self.cap_s, self.base_s * 2.0**self.attempt)
        self.attempt += 1
        delay = self._rng.uniform(0, bound)
        return max(delay, retry_after_s) if retry_after_s is not None else delay

    def reset(self) -> None:
        """A connection was welcomed: the next failure starts from ``base_s`` again."""
        self.attempt = 0
