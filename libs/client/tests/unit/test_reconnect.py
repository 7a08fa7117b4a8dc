"""When the client reconnects, and how long it waits: the rules, without sockets."""

from __future__ import annotations

import random

import pytest

from chat_client import Backoff, Verdict, after_close, after_refusal
from chat_protocol.close_codes import CloseCode

RECONNECT = Verdict.RECONNECT
FINAL = Verdict.FINAL


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (None, RECONNECT),
        (1006, RECONNECT),  # lost without a close frame
        (CloseCode.GOING_AWAY, RECONNECT),
        (CloseCode.INTERNAL_ERROR, RECONNECT),
        (CloseCode.SERVICE_RESTART, RECONNECT),
        (CloseCode.SLOW_CONSUMER, RECONNECT),
        (CloseCode.RESYNC, RECONNECT),
        (4000, RECONNECT),
        (4499, RECONNECT),
        (CloseCode.NORMAL, FINAL),
        (CloseCode.POLICY_VIOLATION, FINAL),
        (CloseCode.MESSAGE_TOO_BIG, FINAL),
        (CloseCode.PROTOCOL_ERROR, FINAL),
        (CloseCode.INVALID_FRAME_PAYLOAD, FINAL),
        (CloseCode.KICKED, FINAL),
        (4500, FINAL),
        (4999, FINAL),
    ],
)
def test_the_close_code_table_decides(code: int | None, verdict: str) -> None:
    assert after_close(code, can_renew_token=False) == verdict
    assert after_close(code, can_renew_token=True) == verdict


def test_an_expired_token_reconnects_only_with_a_way_to_renew_it() -> None:
    assert after_close(CloseCode.CREDENTIALS_EXPIRED, can_renew_token=True) == RECONNECT
    expired = after_close(CloseCode.CREDENTIALS_EXPIRED, can_renew_token=False)
    assert expired == Verdict.TOKEN_EXPIRED


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (403, FINAL),
        (400, FINAL),
        (404, FINAL),
        (429, RECONNECT),
        (500, RECONNECT),
        (503, RECONNECT),
    ],
)
def test_a_refused_handshake_is_retried_only_if_it_may_pass(status: int, verdict: str) -> None:
    assert after_refusal(status) == verdict


def test_backoff_doubles_up_to_its_cap_with_full_jitter() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4.0, rng=random.Random(7))
    bounds = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = [backoff.next_delay() for _ in bounds]
    assert all(0 <= d <= b for d, b in zip(delays, bounds, strict=True)), delays
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule


def test_retry_after_is_the_least_wait_and_a_welcome_resets_the_count() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4.0, rng=random.Random(1))
    assert backoff.next_delay(retry_after_s=7.0) == 7.0
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 0.5


@pytest.mark.parametrize(("base_s", "cap_s"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_backoff_bounds_are_checked(base_s: float, cap_s: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base_s, cap_s)
