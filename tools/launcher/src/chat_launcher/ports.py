"""Is a TCP port free? Checked before anything starts, for a clear message."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable

__all__ = ["busy_ports"]


def busy_ports(host: str, ports: Iterable[int]) -> list[int]:
    """The ports of ``ports`` (0 skipped) that cannot be bound on ``host`` now.

    SO_REUSEADDR is set as uvicorn and nats-server set it, so a port held only by
    connections in TIME_WAIT counts as free, and one with a listener as busy.
    """
    return [port for port in ports if port and not _bindable(host, port)]


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
