"""How the launcher spawns a child so that it never outlives the launcher.

* Each child gets its own process group. A Ctrl-C in the terminal then reaches the
  launcher alone, which stops the children itself, in order (gateways first,
  nats-server last), instead of every process receiving SIGINT at once.
* On Linux each child also asks the kernel for SIGTERM when the launcher dies
  (``PR_SET_PDEATHSIG``), which covers the one case ``finally`` cannot: the
  launcher being killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, Final

__all__ = ["spawn_options"]

# <linux/prctl.h>
_PR_SET_PDEATHSIG: Final = 1


def spawn_options() -> dict[str, Any]:
    """Extra ``subprocess.Popen`` (and asyncio subprocess) options for a child."""
    options: dict[str, Any] = {"process_group": 0}
    if sys.platform == "linux":
        options["preexec_fn"] = _die_with(os.getpid())
    return options


def _die_with(parent: int) -> Callable[[], None]:
    # NOTE(launcher): prctl is looked up before fork; between fork and exec the child
    # only makes the syscall (https://man7.org/linux/man-pages/man2/prctl.2.html).
    # The signal is sent when the forking *thread* ends: children are spawned from
    # the event loop, which runs on the main thread for the launcher's whole life.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os._exit(1)

    return preexec
