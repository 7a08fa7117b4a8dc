"""The chat gateway's own app (memory backend, history on) served by Granian.

The same app ``chat-gateway`` builds with ``CHAT_BACKEND=memory`` — the library,
the chat's resources, its limits — but under Granian's embedded ASGI server (a
Rust HTTP/WebSocket stack, one runtime thread) instead of uvicorn, so it runs
through plain ASGI: the library writes no socket itself. Beside the ``memory``
row of the same run it shows what the server underneath costs.
"""

from __future__ import annotations

import asyncio
import os
import signal

from granian.constants import Interfaces
from granian.log import LogLevels
from granian.server.embed import Server

from benchmarks.fanout import base_gateway_env
from chat_gateway.app import create_app
from chat_gateway.settings import load_settings

from ._chat import announce, arguments, listening_socket


async def main() -> None:
    args = arguments(__doc__.split("\n", 1)[0])
    for name, value in base_gateway_env("memory").items():
        os.environ.setdefault(name, value)
    app = create_app(load_settings(os.environ))
    # Granian binds the port itself: find a free one, then hand it over.
    probe = listening_socket(args.host, args.port)
    port = probe.getsockname()[1]
    probe.close()
    server = Server(
        app,
        address=args.host,
        port=port,
        interface=Interfaces.ASGI,
        websockets=True,
        backlog=4096,
        log_level=LogLevels.warning,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    serving = asyncio.create_task(server.serve())
    announce(port)
    await serving


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
