"""The web page reconnects after exactly the codes the close-code table calls reconnectable."""

from __future__ import annotations

import re
from importlib import resources

from chat_protocol.close_codes import is_reconnectable
from falcon_pachinko.close_codes import RECONNECTABLE

PAGE = (resources.files("chat_gateway") / "static" / "index.html").read_text()


def test_the_page_s_retry_rule_is_is_reconnectable() -> None:
    match = re.search(r"const RETRY_CODES = new Set\(\[([\d, ]+)\]\);", PAGE)
    assert match is not None
    retry = {int(code) for code in match.group(1).split(",")}
    # 1006 (abnormal closure) is never sent; a browser reports it when a connection drops.
    assert retry - {1006} == {code for code in range(1000, 1016) if is_reconnectable(code)}
    first, last = RECONNECTABLE[0], RECONNECTABLE[-1]
    assert f"(code >= {first} && code <= {last})" in PAGE
