"""The ``main()`` every service shares: settings, logging, the event loop, exit codes.

Exit codes:

0
    A clean shutdown after SIGTERM/SIGINT, also one received while NATS was still
    being waited for.
1
    The service cannot run: its port is taken, NATS was not reachable within
    ``CHAT_NATS_CONNECT_TIMEOUT_S`` (when set; by default a service started before
    NATS keeps trying, listening and not ready, and never exits for it), or an
    established NATS connection was lost for good (reconnect attempts exhausted).
2
    Invalid settings (one line on stderr names the variable).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

import msgspec
import uvloop

from .logs import configure_logging
from .settings import CommonSettings

__all__ = ["service_main"]

S = TypeVar("S", bound=CommonSettings)


def service_main(
    name: str,
    load_settings: Callable[[Mapping[str, str]], S],
    run: Callable[[S], Coroutine[Any, Any, int]],
) -> int:
    """Load settings from the environment, configure logging, and run on uvloop.

    Args:
        name: The command's name, which prefixes every message on stderr.
        load_settings: Builds the service's settings from the environment.
        run: The service's main coroutine; returns the exit code.

    Returns:
        The process exit code.
    """
    try:
        settings = load_settings(os.environ)
    except (msgspec.ValidationError, ValueError) as exc:
        print(f"{name}: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(run(settings))
    except (ConnectionError, OSError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
