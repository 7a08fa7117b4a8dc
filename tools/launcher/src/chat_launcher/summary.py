"""What ``chat up`` prints on stdout once everything is ready (pure: no I/O)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlencode

from .plan import Plan

__all__ = ["DEMO_ROOM", "DEMO_TTL_S", "DEMO_USER", "display_host", "ready_message"]

DEMO_USER: Final = "demo"
DEMO_ROOM: Final = "general"
#: The demo token lasts a working day and a night.
DEMO_TTL_S: Final = 24 * 3600.0

_USERINFO: Final = re.compile(r"//[^/@]*@")


def display_host(host: str) -> str:
    """The address to show in a URL: loopback for a wildcard, brackets for IPv6."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def ready_message(
    plan: Plan,
    ports: Mapping[str, int],
    *,
    nats_dir: str,
    token: str | None,
    metrics_host: str = "127.0.0.1",
) -> str:
    """The URLs of every service, then how to connect (dev hint, or a token in jwt mode).

    Args:
        plan: What was started.
        ports: Each child's name mapped to the port it reported with ``service.ready``.
        nats_dir: Where the launcher's nats-server keeps its JetStream data.
        token: The demo user's token (jwt mode), or ``None`` (dev mode).
        metrics_host: The rooms service's and announcer's CHAT_METRICS_HOST.
    """
    host = display_host(plan.gateway.host)
    urls = [f"http://{host}:{ports[g.name]}/" for g in plan.gateways]
    rows = [(g.name, url) for g, url in zip(plan.gateways, urls, strict=True)]
    for name in ("rooms", "announcer"):
        rows.append((name, f"http://{display_host(metrics_host)}:{ports[name]}/metrics"))
    nats = _USERINFO.sub("//", plan.nats_url)
    where = f"JetStream data in {nats_dir}" if plan.own_nats else "CHAT_NATS_URL"
    rows.append(("nats-server", f"{nats} ({where})"))
    width = max(len(name) for name, _ in rows)
    lines = ["", "The chat is up:"] + [f"  {name.ljust(width)}  {url}" for name, url in rows]
    lines += [""] + _how_to_connect(plan, urls[0], token) + ["", "Ctrl-C stops everything."]
    return "\n".join(lines)


def _how_to_connect(plan: Plan, page: str, token: str | None) -> list[str]:
    ws = page.replace("http://", "ws://", 1) + "ws/chat/"
    if plan.gateway.auth == "dev" or token is None:
        return [
            f"Development mode (CHAT_AUTH=dev): open {page}, pick a room; any name works.",
            f"WebSocket clients: {ws}<room>?user=<name>",
        ]
    query = urlencode({"token": token})
    lines = []
    if plan.generated_secret:
        lines.append(
            "JWT mode: CHAT_JWT_SECRET is not set, so a random one was made for this session "
            "(its tokens stop working when `chat up` stops; set CHAT_JWT_SECRET to keep "
            "them and to mint more with `chat token NAME`)."
        )
    else:
        lines.append("JWT mode: more tokens with `chat token NAME` (same CHAT_JWT_SECRET).")
    hours = DEMO_TTL_S / 3600
    lines += [
        f"Token for {DEMO_USER!r} (valid {hours:g} h):",
        f"  {token}",
        f"WebSocket: {ws}{DEMO_ROOM}?{query}",
        f"Browser:   {page}?{query}",
    ]
    return lines
