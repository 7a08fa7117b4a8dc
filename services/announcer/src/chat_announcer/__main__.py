"""``chat-announcer``: the periodic system announcement, for any number of replicas."""

from __future__ import annotations

import sys

from chat_runtime.entrypoint import service_main

from .service import run
from .settings import load_settings


def main() -> int:
    return service_main("chat-announcer", load_settings, run)


if __name__ == "__main__":
    sys.exit(main())
