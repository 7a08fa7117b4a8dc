"""Exit descriptions in the launcher's messages."""

from __future__ import annotations

from chat_launcher.errors import ChildFailed, describe_exit


def test_a_signal_is_named() -> None:
    assert describe_exit(1) == "1"
    assert describe_exit(-9) == "-9 (SIGKILL)"
    assert describe_exit(-999) == "-999 (signal 999)"


def test_child_failed_reads_like_the_report() -> None:
    failed = ChildFailed("gateway-8001", 1, ["gateway-8001 | boom"])
    assert str(failed) == "gateway-8001 exited with code 1"
    assert failed.tail == ["gateway-8001 | boom"]
