"""The chat on bare ``websockets`` (asyncio implementation) and uvloop.

Rooms are sets of connections; a message is encoded once (``json.dumps``) and
written to every member with ``websockets.broadcast``, which does not wait for
slow readers.
"""

from __future__ import annotations

import asyncio
import json
import signal

import uvloop
import websockets
from websockets.asyncio.server import ServerConnection, serve

from benchmarks.peers.servers._chat import (
    Room,
    announce,
    arguments,
    chat_text,
    listening_socket,
    parse_target,
    welcome,
)

rooms: dict[str, tuple[Room, set[ServerConnection]]] = {}


async def handler(ws: ServerConnection) -> None:
    assert ws.request is not None
    target = parse_target(ws.request.path)
    if target is None:
        await ws.close(1008, "not a chat room")
        return
    room_name, user = target
    room, members = rooms.setdefault(room_name, (Room(), set()))
    members.add(ws)
    try:
        await ws.send(json.dumps(welcome(user, room_name)))
        async for frame in ws:
            try:
                text = chat_text(json.loads(frame))
            except ValueError:
                continue
            if text is not None:
                websockets.broadcast(members, json.dumps(room.new_message(user, text)))
    finally:
        members.discard(ws)


async def main() -> None:
    args = arguments(__doc__ or "")
    sock = listening_socket(args.host, args.port)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, sock=sock, compression=None):
        announce(sock.getsockname()[1])
        await stop


if __name__ == "__main__":
    uvloop.run(main())
