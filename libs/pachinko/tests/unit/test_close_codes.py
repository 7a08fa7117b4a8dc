"""The close-code table, the reconnect rule, and the check on applications' own codes."""

from __future__ import annotations

from enum import IntEnum

import pytest

from falcon_pachinko.close_codes import CloseCode, check_application_codes, is_reconnectable


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param(CloseCode.NORMAL, False, id="1000-normal"),
        pytest.param(CloseCode.GOING_AWAY, True, id="1001-going-away"),
        pytest.param(CloseCode.POLICY_VIOLATION, False, id="1008-policy"),
        pytest.param(CloseCode.MESSAGE_TOO_BIG, False, id="1009-too-big"),
        pytest.param(CloseCode.INTERNAL_ERROR, True, id="1011-internal"),
        pytest.param(CloseCode.SERVICE_RESTART, True, id="1012-restart"),
        pytest.param(1013, True, id="1013-try-again-later"),
        pytest.param(3999, False, id="below-application-range"),
        pytest.param(4000, True, id="first-reconnectable"),
        pytest.param(CloseCode.SLOW_CONSUMER, True, id="4001-slow-consumer"),
        pytest.param(4499, True, id="last-reconnectable"),
        pytest.param(4500, False, id="first-terminal"),
        pytest.param(4999, False, id="last-terminal"),
    ],
)
def test_is_reconnectable(code: int, expected: bool) -> None:
    assert is_reconnectable(code) is expected


def test_application_codes_in_the_ranges_pass() -> None:
    class Good(IntEnum):
        BANNED = 4500
        TRY_LATER = 4004

    check_application_codes(Good)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        pytest.param("RFC", 1013, "4000-4999", id="rfc-range"),
        pytest.param("TOO_HIGH", 5000, "4000-4999", id="above-range"),
        pytest.param("MINE", 4001, "SLOW_CONSUMER", id="library-value"),
        pytest.param("SLOW_CONSUMER", 4004, "library code", id="library-name"),
    ],
)
def test_application_codes_that_clash_are_refused(name: str, value: int, message: str) -> None:
    codes = IntEnum("Codes", [(name, value)])
    with pytest.raises(ValueError, match=message):
        check_application_codes(codes)
