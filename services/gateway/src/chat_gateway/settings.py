"""The gateway's configuration, read once from ``CHAT_*`` environment variables.

Every limit has an explicit default here, with its reason; no library default is
inherited silently (uvicorn's own ``ws_max_size`` default is 16 MiB).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final, Literal

from msgspec import Meta

from chat_protocol.messages import MAX_TEXT_CHARS
from chat_runtime.settings import CommonSettings, Port, PositiveFloat, Secret
from chat_runtime.settings import load_settings as _load

__all__ = ["MIN_JWT_SECRET_BYTES", "Secret", "Settings", "load_settings"]

# A maximal chat message: every character may take 6 bytes once JSON-escaped, plus
# the envelope. Frames are limited to at least this much, so any valid message fits.
_MIN_FRAME_BYTES: Final = MAX_TEXT_CHARS * 6 + 1024

#: HS256 keys must be at least as long as the hash output, 256 bits (RFC 7518 §3.2).
MIN_JWT_SECRET_BYTES: Final = 32

NonEmptyStr = Annotated[str, Meta(min_length=1, max_length=256)]


class Settings(CommonSettings, frozen=True, kw_only=True):
    """Gateway settings. Field ``x`` is read from ``CHAT_X``."""

    #: Interface to listen on. Loopback unless deliberately exposed.
    host: str = "127.0.0.1"
    #: HTTP and WebSocket port; 0 picks a free one (logged with ``service.ready``).
    port: Port = 8000
    #: Proxies whose X-Forwarded-For/-Proto headers are trusted (comma-separated
    #: addresses or ``*``). uvicorn's default: only a proxy on the same host.
    forwarded_allow_ips: Annotated[str, Meta(min_length=1)] = "127.0.0.1"
    #: ``nats``: one gateway among many, room traffic and membership over NATS.
    #: ``memory``: a single process with no infrastructure; the announcements then
    #: run inside the gateway (the ``CHAT_ANNOUNCE_*`` settings apply).
    backend: Literal["nats", "memory"] = "nats"
    #: Seconds between membership heartbeats to the rooms service (one per gateway,
    #: not per connection). The rooms service's CHAT_PRESENCE_TTL_S must be a few
    #: times longer (5 s by default, three heartbeats and some).
    heartbeat_interval_s: PositiveFloat = 1.5
    #: ``jwt``: verify an HS256 token given as ``?token=``. ``dev``: trust
    #: ``?user=Name`` (development only; a warning is logged).
    auth: Literal["jwt", "dev"] = "jwt"
    #: HS256 key shared with the token issuer; required, 32+ bytes, when auth is jwt.
    jwt_secret: Secret | None = None
    #: The claim holding the user's chat name.
    jwt_user_claim: NonEmptyStr = "sub"
    #: When set, tokens must carry this ``aud`` (and tokens with any ``aud`` are
    #: refused when unset, as RFC 7519 §4.1.3 requires).
    jwt_audience: NonEmptyStr | None = None
    #: When set, tokens must carry this ``iss``.
    jwt_issuer: NonEmptyStr | None = None
    #: Clock skew tolerated on ``exp``/``nbf``/``iat``: 5 s covers NTP-synced hosts.
    jwt_leeway_s: Annotated[float, Meta(ge=0)] = 5.0
    #: Largest WebSocket frame accepted; bigger frames close the socket with
    #: ``CloseCode.MESSAGE_TOO_BIG``. 64 KiB: ample for the largest valid chat
    #: message, small enough to bound abuse.
    ws_max_bytes: Annotated[int, Meta(le=16 * 1024 * 1024)] = 64 * 1024
    #: Protocol-level pings detect dead peers; 20 s matches common proxy idle limits.
    ws_ping_interval_s: PositiveFloat = 20.0
    ws_ping_timeout_s: PositiveFloat = 20.0
    #: Outbound queue bound per connection (frames); overflow closes with
    #: ``CloseCode.SLOW_CONSUMER``.
    outbound_queue_messages: Annotated[int, Meta(ge=16)] = 1024
    #: Outbound queue bound per connection (bytes); 4 MiB caps a stuck client's memory.
    outbound_queue_bytes: Annotated[int, Meta(ge=64 * 1024)] = 4 * 1024 * 1024
    #: Seconds a closing connection gets to flush its queue and close.
    close_timeout_s: PositiveFloat = 5.0
    #: A typist silent this long is announced as no longer typing. 6 s: clients
    #: repeat clientStartTyping every few seconds while the user types.
    typing_ttl_s: PositiveFloat = 6.0
    #: (``memory`` backend only.) Seconds between system announcements; 0 disables
    #: them. One hour, as in the seed.
    announce_interval_s: Annotated[float, Meta(ge=0)] = 3600.0
    announce_text: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS)] = (
        "System maintenance is scheduled for 2 AM UTC."
    )
    #: Only rooms whose name starts with this get announcements; empty means all.
    announce_room_prefix: str = ""
    #: Seconds uvicorn waits for connections to close at shutdown.
    shutdown_timeout_s: PositiveFloat = 10.0

    # -- Client limits -----------------------------------------------------------
    # Enforced by falcon_pachinko's session core for each connection, and by its
    # route for the whole gateway. The library's own defaults are never used.

    #: Client messages per second per connection, sustained. Every message counts
    #: against this one budget, typing notifications included. Over it a message
    #: gets ``serverError`` ``rate_limited`` and is not sent to the room; a client
    #: that keeps on at more than twice the budget is closed with 1008. 10/s is
    #: several times what a fast typist produces. 0 disables it (benchmarks).
    rate_per_s: Annotated[float, Meta(ge=0, le=1_000_000)] = 10.0
    #: Messages a client may send back to back above the sustained rate: 20
    #: lets a paste of a few lines, or a reconnect's queued messages, through.
    rate_burst: Annotated[int, Meta(ge=1, le=1_000_000)] = 20
    #: Connections one gateway serves at once; beyond them a handshake gets
    #: HTTP 503 with Retry-After, so clients retry (through the load balancer,
    #: another gateway). 10,000 keeps one process's memory (outbound queues) and
    #: fan-out work bounded. 0: no limit. uvicorn's limit_concurrency cannot do
    #: this: it does not apply to WebSocket connections once upgraded.
    max_connections: Annotated[int, Meta(ge=0)] = 10_000
    #: Seconds a handshake may spend connecting (joining the room over NATS,
    #: asking for the roster) before it is refused with HTTP 503. 10 s: far above
    #: a healthy round trip, short enough that stuck handshakes cannot pile up.
    connect_timeout_s: PositiveFloat = 10.0

    def __post_init__(self) -> None:
        if self.ws_max_bytes < _MIN_FRAME_BYTES:
            raise ValueError(
                f"CHAT_WS_MAX_BYTES must be at least {_MIN_FRAME_BYTES} so that a chat "
                f"message of {MAX_TEXT_CHARS} characters always fits"
            )
        if self.outbound_queue_bytes < self.ws_max_bytes:
            raise ValueError("CHAT_OUTBOUND_QUEUE_BYTES must be at least CHAT_WS_MAX_BYTES")
        if self.auth == "jwt":
            _check_jwt_secret(self.jwt_secret)


def _check_jwt_secret(secret: Secret | None) -> None:
    # The messages never include the value, not even its length.
    if secret is None:
        raise ValueError(
            "CHAT_AUTH=jwt requires CHAT_JWT_SECRET (at least "
            f"{MIN_JWT_SECRET_BYTES} bytes, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`); "
            "set CHAT_AUTH=dev only for local development"
        )
    if len(secret.reveal().encode()) < MIN_JWT_SECRET_BYTES:
        raise ValueError(
            f"CHAT_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes "
            "for HS256 (RFC 7518 section 3.2)"
        )


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from ``CHAT_*`` variables; others are ignored.

    Raises:
        msgspec.ValidationError: A variable has a bad value (the message names it
            and never echoes a secret).
        ValueError: A cross-field rule is broken.
    """
    return _load(Settings, environ)
