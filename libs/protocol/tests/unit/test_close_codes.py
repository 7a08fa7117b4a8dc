"""The chat's close codes are the library's table plus the chat's own, never a copy."""

from __future__ import annotations

import falcon_pachinko.close_codes as library
from chat_protocol import close_codes
from chat_protocol.close_codes import ChatCloseCode, CloseCode, is_reconnectable


def test_the_shared_codes_and_the_rule_are_the_library_s_own() -> None:
    assert CloseCode is library.CloseCode
    assert is_reconnectable is library.is_reconnectable


def test_the_chat_s_own_codes_are_application_codes_off_the_library_s_values() -> None:
    library.check_application_codes(ChatCloseCode)
    assert all(code in library.RECONNECTABLE or code in library.TERMINAL for code in ChatCloseCode)


def test_the_docstring_table_lists_every_code() -> None:
    table = close_codes.__doc__ or ""
    for code in [*CloseCode, *ChatCloseCode]:
        assert f"| {int(code)} | {code.name} |" in table, code.name
