"""``chat kick USER [--room ROOM]``: close a user's connections on every gateway.

It publishes one kick on ``chat._dir.kick`` (see ``falcon_pachinko``'s NATS
broker); every gateway closes that user's connections with 4501, which clients
take as "do not reconnect with the same token". Revoking the token itself is the
issuer's job: a kicked user with a still-valid token could connect again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final, TextIO

import msgspec
import nats
import nats.errors

from chat_protocol import InvalidRoomName, InvalidUserName, check_room_name, check_user_name
from chat_protocol import subjects as chat_subjects
from chat_runtime.settings import CommonSettings, load_settings
from falcon_pachinko import BackendError
from falcon_pachinko.backends.nats import NatsBroker, new_node_id
from falcon_pachinko.subjects import Subjects

__all__ = ["run_kick"]

_CONNECT_TIMEOUT_S: Final = 2.0


def run_kick(
    user: str,
    room: str | None,
    reason: str,
    environ: Mapping[str, str],
    out: TextIO,
    err: TextIO,
) -> int:
    """Publish a kick of ``user`` (from ``room`` only, if given) to every gateway.

    Returns:
        0 once the kick is sent; 2 for an invalid name or setting; 1 when NATS
        (``CHAT_NATS_URL``) cannot be reached.
    """
    try:
        check_user_name(user)
        if room is not None:
            check_room_name(room)
        settings = load_settings(CommonSettings, environ)
    except (InvalidUserName, InvalidRoomName, msgspec.ValidationError, ValueError) as exc:
        print(f"chat kick: {exc}", file=err)
        return 2
    if len(reason.encode()) > 123:
        print("chat kick: the reason is at most 123 bytes", file=err)
        return 2
    try:
        asyncio.run(_publish(settings.nats_servers, user, room, reason))
    except (OSError, TimeoutError, nats.errors.Error, BackendError) as exc:
        print(f"chat kick: cannot reach NATS at {settings.nats_url}: {exc}", file=err)
        return 1
    where = f"room {room!r}" if room is not None else "every room"
    subject = Subjects(chat_subjects.PREFIX).kick
    print(f"kicked {user!r} from {where} on every gateway (published on {subject})", file=out)
    return 0


async def _publish(servers: list[str], user: str, room: str | None, reason: str) -> None:
    # NOTE: nats-py treats max_reconnect_attempts=0 as "forever"; one attempt per
    # server, under an overall bound, is what a one-shot command wants.
    async with asyncio.timeout(_CONNECT_TIMEOUT_S * (len(servers) + 1)):
        nc = await nats.connect(
            servers,
            name="chat-kick",
            connect_timeout=_CONNECT_TIMEOUT_S,
            max_reconnect_attempts=1,
            allow_reconnect=False,
            error_cb=_quiet,
        )
    try:
        broker = NatsBroker(nc, Subjects(chat_subjects.PREFIX), new_node_id())
        await broker.kick(user, room, reason)
    finally:
        await nc.drain()


async def _quiet(exc: Exception) -> None:
    # Connection errors are reported once, by run_kick.
    return None
