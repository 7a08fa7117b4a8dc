"""Errors of the launcher.

::

    ChatError(Exception)                       (chat_protocol.errors)
    └── LaunchError(ChatError)
        ├── ConfigError(LaunchError, ValueError)      bad options or CHAT_* values: exit 2
        ├── PortInUse(LaunchError, OSError)           a port the chat needs is taken: exit 1
        ├── ChildFailed(LaunchError, RuntimeError)    a process exited on its own: exit 1
        └── NotReady(LaunchError, TimeoutError)       no ``service.ready`` in time: exit 1
"""

from __future__ import annotations

import signal

from chat_protocol.errors import ChatError

__all__ = [
    "ChildFailed",
    "ConfigError",
    "LaunchError",
    "NotReady",
    "PortInUse",
    "describe_exit",
    "describe_signal",
]


class LaunchError(ChatError):
    """Root of the launcher's exceptions; the message is meant for the person at the terminal."""


class ConfigError(LaunchError, ValueError):
    """An option or a ``CHAT_*`` variable is invalid; nothing was started."""


class PortInUse(LaunchError, OSError):
    """A port the chat needs is already taken."""


class ChildFailed(LaunchError, RuntimeError):
    """A child process exited while it should have been running.

    Attributes:
        name: The child's name (``rooms``, ``gateway-8001``, ``nats-server``).
        returncode: Its exit code (negative: killed by that signal).
        tail: Its last log lines, already rendered and redacted.
    """

    def __init__(self, name: str, returncode: int, tail: list[str]) -> None:
        super().__init__(f"{name} exited with code {describe_exit(returncode)}")
        self.name = name
        self.returncode = returncode
        self.tail = tail


class NotReady(LaunchError, TimeoutError):
    """A child did not log ``service.ready`` within the bound.

    Attributes:
        name: The child's name.
        tail: Its last log lines.
    """

    def __init__(self, name: str, timeout_s: float, tail: list[str]) -> None:
        super().__init__(f"{name} did not become ready within {timeout_s:g} s")
        self.name = name
        self.tail = tail


def describe_exit(returncode: int) -> str:
    """``1``, or ``-9 (SIGKILL)`` for a process killed by a signal."""
    if returncode < 0:
        return f"{returncode} ({describe_signal(-returncode)})"
    return str(returncode)


def describe_signal(number: int) -> str:
    """``SIGKILL`` for 9; the number itself for an unknown signal."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
