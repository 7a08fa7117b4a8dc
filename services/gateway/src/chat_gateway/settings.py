"""The gateway's configuration, read once from ``CHAT_*`` environment variables.

Every limit has an explicit default here, with its reason; no library default is
inherited silently (uvicorn's own ``ws_max_size`` default is 16 MiB).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from msgspec import Meta

from chat_protocol.messages import MAX_TEXT_CHARS
from chat_runtime.settings import CommonSettings, Port, PositiveFloat, Secret
from chat_runtime.settings import load_settings as _load

from .origin import ANY_ORIGIN, OriginPolicy, parse_allowed_origins

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "JWT_ALGORITHMS",
    "MIN_JWT_SECRET_BYTES",
    "Secret",
    "Settings",
    "load_settings",
]

# A maximal chat message: every character may take 6 bytes once JSON-escaped, plus
# the envelope. Frames are limited to at least this much, so any valid message fits.
_MIN_FRAME_BYTES: Final = MAX_TEXT_CHARS * 6 + 1024

#: HS256 keys must be at least as long as the hash output, 256 bits (RFC 7518 §3.2).
MIN_JWT_SECRET_BYTES: Final = 32

NonEmptyStr = Annotated[str, Meta(min_length=1, max_length=256)]

#: Every algorithm the gateway can verify. ``none`` and the HS/RS/ES variants not
#: listed are refused whatever a token says (RFC 8725 section 3.1).
JWT_ALGORITHMS: Final = ("HS256", "RS256", "ES256")
#: The algorithms verified with a public key (a PEM file or a JWKS).
ASYMMETRIC_ALGORITHMS: Final = ("RS256", "ES256")
_LOOPBACK_HOSTS: Final = ("127.0.0.1", "localhost", "::1")


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
    #: Seconds between self-probes: the gateway publishes to a subject only it
    #: hears and times the return; readiness fails once two in a row are lost (a
    #: gateway that is connected but no longer receives). 0 turns it off.
    probe_interval_s: Annotated[float, Meta(ge=0)] = 5.0
    #: A probe not back within this many seconds is lost (below the interval).
    probe_timeout_s: PositiveFloat = 2.0
    #: With ``CHAT_BACKEND=memory`` (the gateway decides presence itself):
    #: presence news that follows the last within this many seconds waits and goes
    #: out with it, in one batch: when many join a room at once, each member's
    #: arrivals then cost one socket write per batch instead of one each. News
    #: after a quiet moment goes out at once. 0 sends each change on its own.
    presence_batch_s: Annotated[float, Meta(ge=0, le=1)] = 0.05
    #: ``jwt``: verify an HS256 token given as ``?token=``. ``dev``: trust
    #: ``?user=Name`` (development only; a warning is logged).
    auth: Literal["jwt", "dev"] = "jwt"
    #: Which pages may open a WebSocket: comma-separated exact origins
    #: (``https://chat.example.com``). Empty: the gateway's own origin only (the
    #: handshake's scheme and Host header). ``*`` (any) only with CHAT_AUTH=dev.
    allowed_origins: str = ""
    #: HS256 key shared with the token issuer (32+ bytes). With CHAT_AUTH=jwt, set
    #: exactly one of this, CHAT_JWT_PUBLIC_KEY_FILE and CHAT_JWT_JWKS_URL.
    jwt_secret: Secret | None = None
    #: PEM file of the issuer's public key (RSA 2048+ bits, or EC P-256).
    jwt_public_key_file: NonEmptyStr | None = None
    #: URL of the issuer's JWK Set (https, or http to a loopback address).
    jwt_jwks_url: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    #: Comma-separated algorithms accepted (HS256, RS256, ES256). Empty: HS256 with
    #: a secret, RS256,ES256 with a public key or JWKS. Never taken from a token.
    jwt_algorithms: str = ""
    #: Bound on one JWKS fetch (connect and read). 2 s: the fetch happens while a
    #: handshake waits.
    jwt_jwks_timeout_s: PositiveFloat = 2.0
    #: Seconds a fetched JWKS is used before it is fetched again. 300 s, as
    #: PyJWT's own JWKS client.
    jwt_jwks_max_age_s: PositiveFloat = 300.0
    #: Least seconds between two fetches caused by tokens with an unknown ``kid``,
    #: so made-up key ids cannot turn handshakes into fetches.
    jwt_jwks_min_refresh_s: Annotated[float, Meta(ge=0)] = 5.0
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
    #: Seconds a client has to send its complete HTTP request headers; a slower one
    #: (slowloris) is dropped before any route or authentication runs. 10 s is
    #: generous for any real client, even on a mobile network.
    handshake_timeout_s: PositiveFloat = 10.0
    #: The WebSocket implementation under uvicorn: ``pachinko`` (uvicorn's
    #: ``websockets-sansio`` lending its sockets to the library, which writes room
    #: traffic framed once per message, without a task switch per delivery), or
    #: one of uvicorn's own (``websockets-sansio``, ``websockets``, ``wsproto``),
    #: through plain ASGI.
    ws_protocol: Literal["pachinko", "websockets-sansio", "websockets", "wsproto"] = "pachinko"
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
    #: Seconds over which a stopping gateway closes its clients (1012), each at a
    #: random moment of its own slot, so they reconnect elsewhere a few at a time
    #: rather than all at once. New handshakes get 503 meanwhile. 0: all at once.
    drain_s: Annotated[float, Meta(ge=0, le=300)] = 5.0

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
    #: Connections one user may hold across the cluster (tabs, devices); one more
    #: is refused with HTTP 429. 10 covers real multi-device use and stops one
    #: token from taking a gateway's capacity. 0: no cap. Counted by the rooms
    #: service; while it is away the cap is not enforced.
    max_connections_per_user: Annotated[int, Meta(ge=0)] = 10
    #: Seconds a handshake may spend connecting (joining the room over NATS,
    #: asking for the roster) before it is refused with HTTP 503. 10 s: far above
    #: a healthy round trip, short enough that stuck handshakes cannot pile up.
    connect_timeout_s: PositiveFloat = 10.0

    # -- Durable rooms -----------------------------------------------------------
    # Chat messages are stored before anyone receives them: JetStream with NATS
    # (the stream is created or updated by every gateway at startup), bounded
    # memory with CHAT_BACKEND=memory (lost when the gateway stops).

    #: Store chat messages (history, resume, idempotent send). Off: live-only,
    #: at-most-once delivery, as before durable rooms (for measurements).
    history: bool = True
    #: Messages a joiner receives as ``serverHistory`` after the welcome; 0: none.
    history_on_join: Annotated[int, Meta(ge=0, le=1000)] = 50
    #: Most messages one ``clientFetchHistory`` answer carries (its ``limit`` is
    #: capped to this). 100 keeps a page of maximal messages under 1.3 MB.
    history_page_max: Annotated[int, Meta(ge=1, le=1000)] = 100
    #: Messages kept per room; older ones are dropped first.
    history_max_messages: Annotated[int, Meta(ge=1)] = 1000
    #: Seconds a message is kept: 7 days.
    history_max_age_s: PositiveFloat = 7 * 86400.0
    #: Bytes the whole store may hold (every room together); the oldest messages
    #: go first beyond it. 1 GiB: about a million messages.
    history_max_bytes: Annotated[int, Meta(ge=1024 * 1024)] = 1024**3
    #: Seconds within which a resend with the same ``clientMsgId`` is recognised;
    #: 120 s is JetStream's own default and covers any reconnect.
    history_dedup_window_s: PositiveFloat = 120.0
    #: JetStream replicas of the history stream: 1 for one NATS server, 3 for a
    #: three-node cluster (survives the loss of a node).
    history_replicas: Annotated[int, Meta(ge=1, le=5)] = 1
    #: Every stored message carries its id in ``Nats-Msg-Id``, as gateways that
    #: predate ``Pachinko-Id`` read it: only during a rolling update from one.
    history_legacy_ids: bool = False

    def __post_init__(self) -> None:
        if self.ws_max_bytes < _MIN_FRAME_BYTES:
            raise ValueError(
                f"CHAT_WS_MAX_BYTES must be at least {_MIN_FRAME_BYTES} so that a chat "
                f"message of {MAX_TEXT_CHARS} characters always fits"
            )
        if self.history_dedup_window_s > self.history_max_age_s:
            raise ValueError(
                "CHAT_HISTORY_DEDUP_WINDOW_S cannot be longer than CHAT_HISTORY_MAX_AGE_S"
            )
        if min(self.history_dedup_window_s, self.history_max_age_s) < 0.1:
            raise ValueError("CHAT_HISTORY_MAX_AGE_S and _DEDUP_WINDOW_S are at least 0.1 s")
        if self.probe_interval_s and not self.probe_timeout_s < self.probe_interval_s:
            raise ValueError("CHAT_PROBE_TIMEOUT_S must be below CHAT_PROBE_INTERVAL_S")
        if self.outbound_queue_bytes < self.ws_max_bytes:
            raise ValueError("CHAT_OUTBOUND_QUEUE_BYTES must be at least CHAT_WS_MAX_BYTES")
        policy = self.origin_policy
        if policy.any_origin and self.auth != "dev":
            raise ValueError(
                f"CHAT_ALLOWED_ORIGINS={ANY_ORIGIN} is allowed only with CHAT_AUTH=dev; "
                "list the origins of the pages that may connect"
            )
        if self.auth == "jwt":
            self._check_jwt()

    @property
    def origin_policy(self) -> OriginPolicy:
        """The parsed ``CHAT_ALLOWED_ORIGINS``."""
        return parse_allowed_origins(self.allowed_origins)

    @property
    def jwt_algorithm_list(self) -> tuple[str, ...]:
        """The algorithms accepted: ``CHAT_JWT_ALGORITHMS``, or the key's default."""
        given = tuple(a.strip() for a in self.jwt_algorithms.split(",") if a.strip())
        if given:
            return given
        return ("HS256",) if self.jwt_secret is not None else ASYMMETRIC_ALGORITHMS

    def _check_jwt(self) -> None:
        sources = [self.jwt_secret, self.jwt_public_key_file, self.jwt_jwks_url]
        if all(source is None for source in sources):
            _check_jwt_secret(None)
        if sum(source is not None for source in sources) > 1:
            raise ValueError(
                "set only one of CHAT_JWT_SECRET, CHAT_JWT_PUBLIC_KEY_FILE and "
                "CHAT_JWT_JWKS_URL: a gateway verifies tokens with one kind of key"
            )
        if self.jwt_secret is not None:
            _check_jwt_secret(self.jwt_secret)
        if self.jwt_jwks_url is not None:
            _check_jwks_url(self.jwt_jwks_url)
        _check_algorithms(self.jwt_algorithm_list, symmetric=self.jwt_secret is not None)


def _check_algorithms(algorithms: tuple[str, ...], *, symmetric: bool) -> None:
    for algorithm in algorithms:
        if algorithm not in JWT_ALGORITHMS:
            raise ValueError(
                f"CHAT_JWT_ALGORITHMS: {algorithm[:20]!r} is not supported; "
                f"choose from {', '.join(JWT_ALGORITHMS)}"
            )
    if symmetric and algorithms != ("HS256",):
        raise ValueError(
            "CHAT_JWT_ALGORITHMS must be HS256 with CHAT_JWT_SECRET (RS256 and ES256 "
            "need CHAT_JWT_PUBLIC_KEY_FILE or CHAT_JWT_JWKS_URL)"
        )
    if not symmetric and "HS256" in algorithms:
        # Verifying HS256 with a public key is the algorithm-confusion attack.
        raise ValueError(
            "CHAT_JWT_ALGORITHMS cannot include HS256 with CHAT_JWT_PUBLIC_KEY_FILE or "
            "CHAT_JWT_JWKS_URL; use RS256 and/or ES256"
        )


def _check_jwks_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    if host and parts.scheme == "https":
        return
    if host in _LOOPBACK_HOSTS and parts.scheme == "http":
        return
    raise ValueError(
        "CHAT_JWT_JWKS_URL must be an https:// URL (http:// only to 127.0.0.1, "
        "localhost or ::1): keys fetched in the clear could be replaced"
    )


def _check_jwt_secret(secret: Secret | None) -> None:
    # The messages never include the value, not even its length.
    if secret is None:
        raise ValueError(
            "CHAT_AUTH=jwt requires CHAT_JWT_SECRET (at least "
            f"{MIN_JWT_SECRET_BYTES} bytes, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
            "CHAT_JWT_PUBLIC_KEY_FILE or CHAT_JWT_JWKS_URL; "
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
    settings = _load(Settings, environ)
    if settings.auth == "jwt" and settings.jwt_public_key_file is not None:
        # Read once here too, so a bad key file is a configuration error (exit 2).
        from .keys import load_public_key_file

        load_public_key_file(settings.jwt_public_key_file)
    return settings
