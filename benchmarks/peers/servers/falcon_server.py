"""The chat on Falcon's ASGI app and uvicorn, written the plain way, no falcon_pachinko.

One WebSocket resource: accept, join the room, send the welcome, then for each
``clientSendMessage`` encode the new message once and ``await send_text`` it to
every member in turn. uvicorn runs as the gateway runs it (uvloop, httptools,
``websockets-sansio``, no compression).
"""

from __future__ import annotations

import json

import falcon
import falcon.asgi
import uvloop
from falcon import WebSocketDisconnected

from benchmarks.peers.servers._chat import (
    Room,
    arguments,
    chat_text,
    serve_on_uvicorn,
    welcome,
)

rooms: dict[str, tuple[Room, set[falcon.asgi.WebSocket]]] = {}


class ChatRoom:
    async def on_websocket(
        self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket, room: str
    ) -> None:
        user = req.get_param("user")
        if not user:
            return  # Falcon refuses the handshake (403)
        await ws.accept()
        chat, members = rooms.setdefault(room, (Room(), set()))
        members.add(ws)
        try:
            await ws.send_media(welcome(user, room))
            while True:
                try:
                    text = chat_text(await ws.receive_media())
                except ValueError:
                    continue
                if text is None:
                    continue
                data = json.dumps(chat.new_message(user, text))
                for member in list(members):
                    try:
                        await member.send_text(data)
                    except WebSocketDisconnected:
                        members.discard(member)
        except WebSocketDisconnected:
            pass
        finally:
            members.discard(ws)


def create_app() -> falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]:
    app = falcon.asgi.App()
    app.add_route("/ws/chat/{room}", ChatRoom())
    return app


async def main() -> None:
    args = arguments(__doc__ or "")
    await serve_on_uvicorn(create_app(), args.host, args.port)


if __name__ == "__main__":
    uvloop.run(main())
