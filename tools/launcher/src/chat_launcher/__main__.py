"""``chat`` (``python -m chat_launcher``): ``chat up`` and ``chat token NAME``."""

from __future__ import annotations

import os
import sys

from .cli import main as run


def main() -> int:
    """The console script: ``chat`` with the process's arguments and environment."""
    return run(sys.argv[1:], os.environ, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
