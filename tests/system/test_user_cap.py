"""The per-user connection cap counts a user's connections on every gateway."""

from __future__ import annotations

from falcon_pachinko.testing import connect, handshake_status

from .cluster import Cluster
from .test_distributed import joined


async def test_the_per_user_cap_spans_gateways(chat: Cluster) -> None:
    await chat.rooms()
    a = await chat.gateway(CHAT_MAX_CONNECTIONS_PER_USER="2")
    b = await chat.gateway(CHAT_MAX_CONNECTIONS_PER_USER="2")
    async with (
        connect(chat.ws_url(a, "general", user="Ann")) as on_a,
        connect(chat.ws_url(b, "general", user="Ann")) as on_b,
    ):
        await joined(on_a)
        await joined(on_b)
        for gateway in (a, b):
            assert await handshake_status(chat.ws_url(gateway, "lobby", user="Ann")) == 429
        assert await handshake_status(chat.ws_url(a, "lobby", user="Ben")) == 101
        refused = [
            e
            for e in a.logs + b.logs
            if e.get("event") == "chat.rejected" and e.get("reason") == "too_many_connections"
        ]
        assert len(refused) == 2
