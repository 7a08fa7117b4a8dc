"""The ``chat-announcer`` console script, as a process (no NATS needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from falcon_pachinko.testing import scaled

pytestmark = pytest.mark.integration


def script() -> str:
    scripts = sysconfig.get_path("scripts")
    found = shutil.which("chat-announcer", path=scripts) or shutil.which("chat-announcer")
    assert found, "chat-announcer is not installed (pip install -e services/announcer)"
    return found


@pytest.mark.parametrize("how", ["console-script", "module"])
def test_an_invalid_variable_exits_2_with_one_line_naming_it(how: str) -> None:
    command = [script()] if how == "console-script" else [sys.executable, "-m", "chat_announcer"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")} | {
        "CHAT_ANNOUNCE_INTERVAL_S": "0"
    }
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=scaled(30), check=False
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chat-announcer: invalid configuration: CHAT_ANNOUNCE_INTERVAL_S")
