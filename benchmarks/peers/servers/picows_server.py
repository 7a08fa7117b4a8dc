"""The chat on picows: one process, uvloop, callbacks instead of coroutines.

A message is encoded once (``json.dumps``) and written to every member of the
room synchronously (``WSTransport.send`` queues on the transport, never waits).
"""

from __future__ import annotations

import asyncio
import json
import signal

import uvloop
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from benchmarks.peers.servers._chat import (
    Room,
    announce,
    arguments,
    chat_text,
    listening_socket,
    parse_target,
    welcome,
)

rooms: dict[str, tuple[Room, set[WSTransport]]] = {}


class ChatListener(WSListener):
    def __init__(self, room_name: str, user: str) -> None:
        self.room_name = room_name
        self.user = user
        self.room, self.members = rooms.setdefault(room_name, (Room(), set()))

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.members.add(transport)
        data = json.dumps(welcome(self.user, self.room_name)).encode()
        transport.send(WSMsgType.TEXT, data)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            try:
                text = chat_text(json.loads(frame.get_payload_as_bytes()))
            except ValueError:
                return
            if text is None:
                return
            data = json.dumps(self.room.new_message(self.user, text)).encode()
            for member in self.members:
                member.send(WSMsgType.TEXT, data)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.members.discard(transport)


def listener_factory(request: WSUpgradeRequest) -> ChatListener | None:
    target = parse_target(request.path.decode("latin-1"))
    return None if target is None else ChatListener(*target)  # None: 404


async def main() -> None:
    args = arguments(__doc__ or "")
    sock = listening_socket(args.host, args.port)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    server = await ws_create_server(listener_factory, sock=sock)
    announce(sock.getsockname()[1])
    await stop
    for _, members in rooms.values():
        for transport in list(members):
            transport.send_close(WSCloseCode.GOING_AWAY)
            transport.disconnect()
    server.close()


if __name__ == "__main__":
    uvloop.run(main())
