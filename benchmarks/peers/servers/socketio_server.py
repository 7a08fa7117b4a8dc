"""The chat on python-socketio, several processes joined by Redis.

The usual way to run socket.io on more than one process: an ``AsyncServer`` with
an ``AsyncRedisManager``, served by uvicorn (as the gateway serves, websocket
transport only in practice: the benchmark's clients open it directly). Each chat
message of the protocol travels as the socket.io event ``message`` whose data is
the protocol's JSON object; ``sio.emit(..., room=...)`` publishes it on Redis and
every process delivers it to its own members of the room (encoded once per
process).

    python -m benchmarks.peers.servers.socketio_server --port 0 --redis redis://127.0.0.1:6379/0

The room and user come from the connection's query string: ``?room=<room>&user=<name>``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import socketio
import uvloop

from benchmarks.peers.servers._chat import (
    Room,
    arguments,
    chat_text,
    serve_on_uvicorn,
    welcome,
)

args = arguments(__doc__ or "")
sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=socketio.AsyncRedisManager(args.redis),
    # Events emitted from the connect handler reach the client after the acceptance.
    always_connect=True,
    cors_allowed_origins="*",
)
#: sid -> (room name, user)
members: dict[str, tuple[str, str]] = {}
# Each process numbers the messages it sends: socket.io has no room-wide order.
rooms: dict[str, Room] = {}


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    room, user = query.get("room", [""])[0], query.get("user", [""])[0]
    if not room or not user:
        return False
    members[sid] = (room, user)
    await sio.enter_room(sid, room)
    await sio.emit("message", welcome(user, room), to=sid)
    return True


@sio.event
async def disconnect(sid: str, reason: Any = None) -> None:
    members.pop(sid, None)


@sio.on("message")
async def message(sid: str, data: Any) -> None:
    text = chat_text(data)
    if text is None or sid not in members:
        return
    room, user = members[sid]
    chat = rooms.setdefault(room, Room())
    await sio.emit("message", chat.new_message(user, text), room=room)


async def main() -> None:
    await serve_on_uvicorn(socketio.ASGIApp(sio), args.host, args.port)


if __name__ == "__main__":
    uvloop.run(main())
