"""The client-limit settings: explicit defaults, bounds, and how they reach the library."""

from __future__ import annotations

import msgspec
import pytest

from chat_gateway.app import connection_limits
from chat_gateway.settings import load_settings
from falcon_pachinko import ConnectionLimits

DEV = {"CHAT_AUTH": "dev"}


def test_every_limit_has_the_documented_default() -> None:
    settings = load_settings(DEV)
    assert (settings.rate_per_s, settings.rate_burst) == (10.0, 20)
    assert settings.max_connections == 10_000
    assert settings.connect_timeout_s == 10.0


def test_the_settings_reach_the_library_and_no_library_default_slips_in() -> None:
    settings = load_settings(
        {
            **DEV,
            "CHAT_RATE_PER_S": "2.5",
            "CHAT_RATE_BURST": "7",
            "CHAT_CONNECT_TIMEOUT_S": "3",
            "CHAT_OUTBOUND_QUEUE_MESSAGES": "64",
        }
    )
    limits = connection_limits(settings)
    assert (limits.rate_per_s, limits.rate_burst) == (2.5, 7)
    assert limits.connect_timeout_s == 3.0
    assert limits.max_queue_messages == 64
    library = ConnectionLimits()
    assert limits.rate_per_s != library.rate_per_s and limits.rate_burst != library.rate_burst


@pytest.mark.parametrize(
    ("variable", "value", "ok"),
    [
        pytest.param("CHAT_RATE_PER_S", "0", True, id="rate-zero-disables"),
        pytest.param("CHAT_RATE_PER_S", "-1", False, id="negative-rate"),
        pytest.param("CHAT_RATE_BURST", "1", True, id="burst-one"),
        pytest.param("CHAT_RATE_BURST", "0", False, id="burst-zero"),
        pytest.param("CHAT_MAX_CONNECTIONS", "0", True, id="no-connection-limit"),
        pytest.param("CHAT_MAX_CONNECTIONS", "-1", False, id="negative-connections"),
        pytest.param("CHAT_CONNECT_TIMEOUT_S", "0", False, id="zero-connect-timeout"),
    ],
)
def test_limit_bounds(variable: str, value: str, ok: bool) -> None:
    if ok:
        load_settings({**DEV, variable: value})
    else:
        with pytest.raises(msgspec.ValidationError, match=variable):
            load_settings({**DEV, variable: value})
