"""What the peer servers share: the URL they serve, the two messages they send."""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import sys
import time
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

PREFIX: Final = "/ws/chat/"
MAX_TEXT_CHARS: Final = 2000
_ids: Final = itertools.count(1)
_PID: Final = os.getpid()


def parse_target(target: str) -> tuple[str, str] | None:
    """``(room, user)`` from ``/ws/chat/<room>?user=<name>``; ``None`` for anything else."""
    parts = urlsplit(target)
    room = parts.path[len(PREFIX) :] if parts.path.startswith(PREFIX) else ""
    users = parse_qs(parts.query).get("user")
    if not room or "/" in room or not users or not users[0]:
        return None
    return room, users[0]


def welcome(user: str, room: str) -> dict[str, Any]:
    return {"type": "serverSystemMessage", "payload": {"text": f"Welcome {user} to room '{room}'!"}}


def chat_text(message: Any) -> str | None:
    """The text of a decoded ``clientSendMessage``; ``None`` for anything else."""
    if not isinstance(message, dict) or message.get("type") != "clientSendMessage":
        return None
    payload = message.get("payload")
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT_CHARS:
        return None
    return text


class Room:
    """A room's sequence numbers (its members are each server's own business)."""

    __slots__ = ("seq",)

    def __init__(self) -> None:
        self.seq = 0

    def new_message(self, user: str, text: str) -> dict[str, Any]:
        self.seq += 1
        return {
            "type": "serverNewMessage",
            "payload": {
                "user": user,
                "text": text,
                "id": f"{_PID}-{next(_ids)}",
                "seq": self.seq,
                "ts": time.time_ns() // 1_000_000,
            },
        }


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--redis", default="", help="redis URL (socketio only)")
    return parser.parse_args()


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket: connections queue from now on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def announce(port: int) -> None:
    """Tell the benchmark where this server listens (its first line on stdout)."""
    sys.stdout.write(f"LISTENING {port}\n")
    sys.stdout.flush()


async def serve_on_uvicorn(app: Any, host: str, port: int) -> None:
    """Serve an ASGI ``app`` as the gateway's uvicorn does, through plain ASGI.

    It stops on SIGTERM and SIGINT.
    """
    import uvicorn  # only the ASGI peers need it

    sock = listening_socket(host, port)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    announce(sock.getsockname()[1])
    await server.serve(sockets=[sock])
