"""The gateway's configuration, read once from ``CHAT_*`` environment variables.

Every limit has an explicit default here, with its reason; no library default is
inherited silently (uvicorn's own ``ws_max_size`` default is 16 MiB).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from chat_protocol.messages import MAX_TEXT_CHARS

__all__ = ["ENV_PREFIX", "Settings", "load_settings", "unknown_variables"]

ENV_PREFIX: Final = "CHAT_"

# A maximal chat message: every character may take 6 bytes once JSON-escaped, plus
# the envelope. Frames are limited to at least this much, so any valid message fits.
_MIN_FRAME_BYTES: Final = MAX_TEXT_CHARS * 6 + 1024

Port = Annotated[int, Meta(ge=1, le=65535)]
PositiveFloat = Annotated[float, Meta(gt=0)]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Gateway settings. Field ``x`` is read from ``CHAT_X``."""

    #: Interface to listen on. Loopback unless deliberately exposed.
    host: str = "127.0.0.1"
    port: Port = 8000
    #: ``dev``: trust ``?user=Name`` (development only; a warning is logged).
    auth: Literal["dev"] = "dev"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``json`` for machines (one object per line), ``console`` for people.
    log_format: Literal["json", "console"] = "json"
    #: Largest WebSocket frame accepted; bigger frames close the socket with 1009.
    #: 64 KiB: ample for the largest valid chat message, small enough to bound abuse.
    ws_max_bytes: Annotated[int, Meta(le=16 * 1024 * 1024)] = 64 * 1024
    #: Protocol-level pings detect dead peers; 20 s matches common proxy idle limits.
    ws_ping_interval_s: PositiveFloat = 20.0
    ws_ping_timeout_s: PositiveFloat = 20.0
    #: Outbound queue bound per connection (frames); overflow closes with 4001.
    outbound_queue_messages: Annotated[int, Meta(ge=16)] = 1024
    #: Outbound queue bound per connection (bytes); 4 MiB caps a stuck client's memory.
    outbound_queue_bytes: Annotated[int, Meta(ge=64 * 1024)] = 4 * 1024 * 1024
    #: Seconds a closing connection gets to flush its queue and close.
    close_timeout_s: PositiveFloat = 5.0
    #: Seconds between system announcements; 0 disables them. One hour, as in the seed.
    announce_interval_s: Annotated[float, Meta(ge=0)] = 3600.0
    announce_text: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS)] = (
        "System maintenance is scheduled for 2 AM UTC."
    )
    #: Only rooms whose name starts with this get announcements; empty means all.
    announce_room_prefix: str = ""
    #: Seconds uvicorn waits for connections to close at shutdown.
    shutdown_timeout_s: PositiveFloat = 10.0

    def __post_init__(self) -> None:
        if self.ws_max_bytes < _MIN_FRAME_BYTES:
            raise ValueError(
                f"CHAT_WS_MAX_BYTES must be at least {_MIN_FRAME_BYTES} so that a chat "
                f"message of {MAX_TEXT_CHARS} characters always fits"
            )
        if self.outbound_queue_bytes < self.ws_max_bytes:
            raise ValueError("CHAT_OUTBOUND_QUEUE_BYTES must be at least CHAT_WS_MAX_BYTES")


_FIELDS: Final = frozenset(Settings.__struct_fields__)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from ``CHAT_*`` variables; others are ignored.

    Raises:
        msgspec.ValidationError: A variable has a value of the wrong type or range.
        ValueError: A cross-field rule is broken.
    """
    values = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in _FIELDS
    }
    return msgspec.convert(values, Settings, strict=False)


def unknown_variables(environ: Mapping[str, str], known: frozenset[str] = _FIELDS) -> list[str]:
    """``CHAT_*`` variables this service does not read (typos, or another service's)."""
    return sorted(
        key
        for key in environ
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() not in known
    )
