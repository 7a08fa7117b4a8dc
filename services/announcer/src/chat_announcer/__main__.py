"""``chat-announcer``: the periodic system announcement, for any number of replicas."""

from __future__ import annotations

import asyncio
import os
import sys

import msgspec

from chat_runtime.logs import configure_logging

from .service import run
from .settings import load_settings


def main() -> int:
    try:
        settings = load_settings(os.environ)
    except (msgspec.ValidationError, ValueError) as exc:
        print(f"chat-announcer: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        return asyncio.run(run(settings))
    except (ConnectionError, OSError) as exc:
        print(f"chat-announcer: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
