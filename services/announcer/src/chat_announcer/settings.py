"""The announcer's configuration, read once from ``CHAT_*`` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from msgspec import Meta

from chat_protocol.messages import MAX_TEXT_CHARS
from chat_runtime.settings import CommonSettings
from chat_runtime.settings import load_settings as _load

__all__ = ["MAX_INTERVAL_S", "Settings", "load_settings"]

#: Longest period accepted: one year. The lease bucket keeps keys for three periods,
#: and JetStream stores that age as int64 nanoseconds; a year is far inside it.
MAX_INTERVAL_S = 366 * 24 * 3600.0


class Settings(CommonSettings, frozen=True, kw_only=True):
    """Announcer settings. Field ``x`` is read from ``CHAT_X``."""

    #: Seconds per period; one announcement per room per period. One hour, as the
    #: seed's ``system_announcement_worker`` does (``asyncio.sleep(3600)``).
    announce_interval_s: Annotated[float, Meta(gt=0, le=MAX_INTERVAL_S)] = 3600.0
    #: The seed's announcement text. Bounded like every chat text
    #: (chat_protocol.messages.MAX_TEXT_CHARS), so clients accept it.
    announce_text: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS)] = (
        "System maintenance is scheduled for 2 AM UTC."
    )
    #: Only rooms whose name starts with this are announced to; empty (the seed's
    #: ``get_rooms_by_prefix("")``) means every room. A non-empty prefix must itself
    #: look like the start of a room name, or it could never match one.
    announce_room_prefix: Annotated[
        str, Meta(pattern=r"^([a-z0-9][a-z0-9_-]{0,63})?\Z", max_length=64)
    ] = ""
    #: JetStream KV bucket holding the period leases. Shared by every replica of one
    #: deployment; its own name so it never collides with another service's bucket.
    announce_lease_bucket: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]+\Z", max_length=64)] = (
        "chat_announcer"
    )
    #: Replicas of the lease bucket when the announcer creates it: 3 on a 3-node
    #: JetStream cluster, so periods are still claimed while a node is down. An
    #: existing bucket keeps its replicas (a warning names both).
    announce_lease_replicas: Annotated[int, Meta(ge=1, le=5)] = 1
    #: Health and metrics endpoint. Loopback unless deliberately exposed.
    metrics_host: str = "127.0.0.1"
    #: Next to the rooms service's 9101. 0 picks a free port (tests).
    metrics_port: Annotated[int, Meta(ge=0, le=65535)] = 9102


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from the environment.

    Raises:
        msgspec.ValidationError: A variable has a bad value (the message names it).
        ValueError: A cross-field rule is broken.
    """
    return _load(Settings, environ)
