"""``chat-gateway``: serve the chat over WebSockets with uvicorn."""

from __future__ import annotations

import os
import sys
from typing import Any

import msgspec
import structlog
import uvicorn

from .app import create_app
from .logs import configure_logging
from .settings import Settings, load_settings, unknown_variables


def main() -> int:
    try:
        settings = load_settings(os.environ)
    except (msgspec.ValidationError, ValueError) as exc:
        print(f"chat-gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    for name in unknown_variables(os.environ):
        structlog.get_logger(__name__).warning("config.unused_variable", variable=name)
    server = uvicorn.Server(uvicorn_config(settings))
    server.run()
    return 0 if server.started else 1


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for the gateway."""
    app = create_app(settings, on_ready=lambda: print(banner(settings), flush=True))
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        **uvicorn_options(settings),
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The WebSocket and lifecycle options, every limit spelled out (tests reuse them)."""
    return {
        "ws": "websockets-sansio",
        "ws_max_size": settings.ws_max_bytes,
        "ws_ping_interval": settings.ws_ping_interval_s,
        "ws_ping_timeout": settings.ws_ping_timeout_s,
        "ws_per_message_deflate": False,
        "lifespan": "on",
        "log_config": None,
        "server_header": False,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_s),
    }


def banner(settings: Settings) -> str:
    """What a person starting the gateway needs to know to connect."""
    base = f"{settings.host}:{settings.port}"
    lines = [f"Chat is running on http://{base}/ - open it in a browser."]
    if settings.auth == "dev":
        lines.append(
            f"WebSocket clients: ws://{base}/ws/chat/<room>?user=<name>"
            " (development mode: the name is trusted as given)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
