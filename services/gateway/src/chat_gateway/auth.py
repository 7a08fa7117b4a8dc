"""Authentication: who is connecting. Sets ``req.context.user`` or leaves it unset.

The resource rejects a connection without a user at the handshake (HTTP 403).

Two modes, chosen by ``CHAT_AUTH``:

* ``jwt``: the client sends a JWT as ``?token=`` (plain HTTP requests may send
  it as ``Authorization: Bearer`` instead), signed with HS256 (a shared
  secret) or RS256/ES256 (the issuer's private key; the gateway has the public
  key from a PEM file or a JWK Set). :func:`verify_token` is the pure core (no
  I/O; the time and the keys are parameters): it returns a :class:`User` or a
  :class:`Rejected` with a machine-readable reason, and never raises for bad
  input. :class:`JwtAuthMiddleware` adapts it to Falcon, gets the keys (from
  :class:`~chat_gateway.jwks.JwksKeys` when they come from a JWKS) and logs
  ``auth.rejected``.

The accepted algorithms are configured (``CHAT_JWT_ALGORITHMS``), never read from
the token: a token whose header names another is refused before any key is
looked at, and a key is used only with the algorithm of its kind (an HMAC secret
for HS256, an RSA key for RS256, a P-256 key for ES256), so a token "signed" with
a public key used as an HMAC secret is refused (algorithm confusion).

A token may restrict its user to some rooms with a ``rooms`` claim: a list of
exact room names and ``prefix*`` patterns (:class:`falcon_pachinko.permissions.RoomPatterns`).
Without the claim every room is allowed.
* ``dev``: :class:`DevAuthMiddleware` trusts ``?user=Name``.

Neither the token nor the query string is ever logged: a token is a credential
until it expires.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import jwt
import msgspec
import structlog
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chat_protocol import InvalidUserName, check_user_name
from falcon_pachinko.permissions import RoomPatterns

from .errors import KeysUnavailable
from .keys import JwksKeys, KeySource, PublicKey, PublicKeys, StaticKeys, load_public_key_file
from .settings import ASYMMETRIC_ALGORITHMS, Secret

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "ALGORITHM",
    "MAX_TOKEN_CHARS",
    "DevAuthMiddleware",
    "JwtAuthMiddleware",
    "JwtConfig",
    "Reason",
    "Rejected",
    "User",
    "auth_middleware",
    "bearer_token",
    "issue_token",
    "token_header",
    "verify_token",
]

log = structlog.get_logger(__name__)

#: The algorithm of shared-secret tokens (and of :func:`issue_token`). Which
#: algorithms are accepted is configured, never taken from the token's header
#: (RFC 8725 §2.1, §3.1), so ``none`` is always refused.
ALGORITHM: Final = "HS256"


#: Longest token looked at. A gateway token (name, exp, iat, aud, iss) is about
#: 250 characters; 4 KiB leaves room for extra claims and bounds the parsing work
#: an anonymous client can cause.
MAX_TOKEN_CHARS: Final = 4096

#: Why a credential was refused: the ``reason`` of the ``auth.rejected`` log event.
#:
#: * ``missing_token``: no ``?token=``, or an empty one.
#: * ``malformed``: not a compact JWS, bad base64 or JSON, or over MAX_TOKEN_CHARS.
#: * ``bad_algorithm``: the header's ``alg`` is not one of the configured algorithms
#:   (``none``, HS512, HS256 when keys are public...), or not the algorithm of the
#:   key its ``kid`` names.
#: * ``unknown_key``: the ``kid`` names no key of the JWK Set (after a refresh).
#: * ``bad_signature``: signed with another key, or altered.
#: * ``expired``: ``exp`` is past, beyond the leeway.
#: * ``not_yet_valid``: ``nbf`` or ``iat`` is in the future, beyond the leeway.
#: * ``wrong_audience``: ``aud`` differs from CHAT_JWT_AUDIENCE (or is set when that is not).
#: * ``wrong_issuer``: ``iss`` differs from CHAT_JWT_ISSUER.
#: * ``invalid_claims``: a required claim (``exp``, the name claim, ``aud``/``iss`` when
#:   configured) is missing or mistyped, the name is not a valid chat user name, or
#:   the ``rooms`` claim is not a non-empty list of names and ``prefix*`` patterns.
#: * ``keys_unavailable``: the JWK Set could not be fetched and the token's key is
#:   not known (the handshake gets 503, retry).
#: * ``invalid_user_name``: development mode only, ``?user=`` is not a valid name.
Reason = Literal[
    "missing_token",
    "malformed",
    "bad_algorithm",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_audience",
    "wrong_issuer",
    "invalid_claims",
    "invalid_user_name",
    "keys_unavailable",
]

# First match wins: InvalidSignatureError is a DecodeError, so it comes first.
_ERROR_REASONS: Final[tuple[tuple[type[jwt.PyJWTError], Reason], ...]] = (
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAlgorithmError, "bad_algorithm"),
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.MissingRequiredClaimError, "invalid_claims"),
    (jwt.DecodeError, "malformed"),
)


class User(msgspec.Struct, frozen=True):
    """An authenticated user.

    Attributes:
        name: The chat name.
        rooms: The rooms the token permits, or ``None``: every room.
        expires_at: When the credential expires (the token's ``exp``, Unix
            seconds); ``None`` when it does not (development mode).
    """

    name: str
    rooms: RoomPatterns | None = None
    expires_at: float | None = None


class Rejected(msgspec.Struct, frozen=True):
    """A refused credential. ``reason`` is safe to log; it holds nothing the client sent."""

    reason: Reason


class JwtConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How tokens are verified (from the ``CHAT_JWT_*`` settings).

    Attributes:
        secret: The HS256 key; ``None`` when tokens are verified with public keys.
        algorithms: The algorithms accepted (``HS256`` needs ``secret``; ``RS256``
            and ``ES256`` need the :class:`PublicKeys` given to :func:`verify_token`).
        user_claim: The claim holding the user's chat name.
        rooms_claim: The claim that may restrict the rooms (see :class:`User`).
        audience: Required ``aud`` value; ``None`` refuses tokens that carry one.
        issuer: Required ``iss`` value; ``None`` accepts any issuer.
        leeway_s: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
    """

    secret: Secret | None = None
    algorithms: tuple[str, ...] = (ALGORITHM,)
    user_claim: str = "sub"
    rooms_claim: str = "rooms"
    audience: str | None = None
    issuer: str | None = None
    leeway_s: float = 5.0


def verify_token(
    token: str | None, config: JwtConfig, now: float, keys: PublicKeys | None = None
) -> User | Rejected:
    """Check a token and return who it names.

    The algorithm must be one of ``config.algorithms`` and match its key's kind;
    signature, required claims, ``aud`` and ``iss`` are then PyJWT's checks; the
    time claims are checked here against ``now``, so the result depends only on
    the arguments.

    Args:
        token: The ``?token=`` value, or ``None`` when there is none.
        config: The verification settings.
        now: The current time, in seconds since the epoch.
        keys: The public keys, for RS256 and ES256.

    Returns:
        The :class:`User` named by ``config.user_claim``, or :class:`Rejected` with
        the reason. Bad tokens never raise.
    """
    if not token:
        return Rejected("missing_token")
    if len(token) > MAX_TOKEN_CHARS:
        return Rejected("malformed")
    header = token_header(token)
    if header is None:
        return Rejected("malformed")
    key = _key_for(header, config, keys)
    if isinstance(key, Rejected):
        return key
    try:
        claims = _decode(token, key, str(header["alg"]), config)
    except jwt.PyJWTError as exc:
        return Rejected(_reason(exc))
    reason = _check_times(claims, now, config.leeway_s)
    if reason is not None:
        return Rejected(reason)
    return _user(claims, config)


def token_header(token: str) -> dict[str, Any] | None:
    """The unverified JOSE header of ``token``, or ``None`` if it cannot be read.

    Only for choosing a key: nothing in it is trusted until the signature is checked.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return None
    kid = header.get("kid")
    return header if kid is None or isinstance(kid, str) else None


def _key_for(
    header: Mapping[str, Any], config: JwtConfig, keys: PublicKeys | None
) -> str | PublicKey | Rejected:
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in config.algorithms:
        return Rejected("bad_algorithm")
    if algorithm == ALGORITHM:
        if config.secret is None:
            return Rejected("bad_algorithm")
        return config.secret.reveal()
    key = None if keys is None else keys.find(header.get("kid"))
    if key is None:
        return Rejected("unknown_key")
    if not _key_fits(key, algorithm):
        return Rejected("bad_algorithm")
    return key


def _key_fits(key: PublicKey, algorithm: str) -> bool:
    if algorithm == "RS256":
        return isinstance(key, rsa.RSAPublicKey)
    if algorithm == "ES256":
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    return False


def _user(claims: Mapping[str, Any], config: JwtConfig) -> User | Rejected:
    try:
        name = check_user_name(claims[config.user_claim])
    except InvalidUserName:
        return Rejected("invalid_claims")
    expires_at = float(claims["exp"])
    if config.rooms_claim not in claims:
        return User(name, expires_at=expires_at)
    rooms = claims[config.rooms_claim]
    if not isinstance(rooms, list) or not rooms:
        return Rejected("invalid_claims")
    try:
        return User(name, rooms=RoomPatterns.parse(rooms), expires_at=expires_at)
    except ValueError:
        return Rejected("invalid_claims")


def _decode(token: str, key: str | PublicKey, algorithm: str, config: JwtConfig) -> dict[str, Any]:
    # NOTE(gateway): PyJWT reads the wall clock itself, so its exp/nbf/iat checks are
    # off and _check_times applies the same rules to the injected `now`
    # (https://pyjwt.readthedocs.io/en/stable/api.html#jwt.decode).
    return jwt.decode(
        token,
        key,
        algorithms=[algorithm],
        options={
            "require": ["exp", config.user_claim],
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        },
        audience=config.audience,
        issuer=config.issuer,
    )


def _reason(exc: jwt.PyJWTError) -> Reason:
    for error_type, reason in _ERROR_REASONS:
        if isinstance(exc, error_type):
            return reason
    # The other claim checks (sub, jti, iat types; the b64/crit header rules).
    return "invalid_claims"


def _check_times(claims: Mapping[str, Any], now: float, leeway_s: float) -> Reason | None:
    """PyJWT's time rules (RFC 7519 §4.1.4-4.1.6), against an injected ``now``."""
    exp = claims["exp"]  # present: decode required it
    if not _is_numeric_date(exp):
        return "invalid_claims"
    if exp <= now - leeway_s:
        return "expired"
    for name in ("nbf", "iat"):
        if name not in claims:
            continue
        value = claims[name]
        if not _is_numeric_date(value):
            return "invalid_claims"
        if value > now + leeway_s:
            return "not_yet_valid"
    return None


#: No real date is past this many seconds (2**53: what a float holds exactly).
_MAX_DATE: Final = 2**53


def _is_numeric_date(value: object) -> bool:
    # JSON true is a Python int, and Python's json accepts Infinity and NaN. Huge
    # integers are no dates either (and would not fit a float).
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < _MAX_DATE
    return isinstance(value, float) and math.isfinite(value) and abs(value) < _MAX_DATE


def issue_token(
    secret: str,
    name: str,
    *,
    ttl_s: float = 3600,
    now: float | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    claim: str = "sub",
    rooms: list[str] | None = None,
) -> str:
    """Sign an HS256 token that :func:`verify_token` accepts for ``name``.

    Args:
        secret: The HS256 key (the gateway's ``CHAT_JWT_SECRET``).
        name: The user's chat name.
        ttl_s: Seconds until the token expires.
        now: The issue time, in seconds since the epoch; the wall clock if ``None``.
        audience: The ``aud`` claim, if the gateway requires one.
        issuer: The ``iss`` claim, if the gateway requires one.
        claim: The claim that holds the name (the gateway's ``CHAT_JWT_USER_CLAIM``).
        rooms: The ``rooms`` claim (exact names and ``prefix*`` patterns), if any.

    Returns:
        The token, in JWS compact form.

    Raises:
        InvalidUserName: ``name`` is not a valid chat user name.
        ValueError: ``ttl_s`` is not positive.
    """
    check_user_name(name)
    if not ttl_s > 0:
        raise ValueError("ttl_s must be positive")
    issued_at = time.time() if now is None else now
    payload: dict[str, Any] = {
        claim: name,
        "iat": int(issued_at),
        "exp": int(issued_at + ttl_s),
    }
    if audience is not None:
        payload["aud"] = audience
    if issuer is not None:
        payload["iss"] = issuer
    if rooms is not None:
        payload["rooms"] = rooms
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


class JwtAuthMiddleware:
    """Production mode: ``?token=`` must be a valid JWT (see :func:`verify_token`).

    Args:
        config: How tokens are verified.
        clock: The wall clock, in seconds since the epoch.
        keys: Where the public keys come from (RS256/ES256); ``None`` for HS256.

    A handshake whose keys cannot be had (the JWKS is unreachable) gets
    ``req.context.auth_unavailable = True`` and no user; the resource answers 503.
    """

    def __init__(
        self,
        config: JwtConfig,
        clock: Callable[[], float] = time.time,
        keys: KeySource | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._keys = keys

    async def _authenticate(self, req: Any, *, required: bool) -> None:
        token = req.get_param("token")
        if token is None and not required:
            token = bearer_token(req.get_header("Authorization"))
        if token is None and not required:
            return
        try:
            keys = await self._public_keys(token)
        except KeysUnavailable:
            req.context.auth_unavailable = True
            log.info("auth.rejected", reason="keys_unavailable")
            return
        result = verify_token(token, self._config, self._clock(), keys)
        if isinstance(result, User):
            req.context.user = result
        else:
            # Only the reason: never the token, the query string or the claims.
            log.info("auth.rejected", reason=result.reason)

    async def _public_keys(self, token: str | None) -> PublicKeys | None:
        # Keys are looked up only for a token that could use them: an allowed
        # asymmetric algorithm in a readable header. Junk never causes a fetch.
        if self._keys is None or not token or len(token) > MAX_TOKEN_CHARS:
            return None
        header = token_header(token)
        algorithm = None if header is None else header.get("alg")
        if header is None or algorithm not in self._config.algorithms:
            return None
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            return None
        return await self._keys.keys_for(header.get("kid"))

    async def process_request(self, req: Any, resp: Any) -> None:
        # Plain HTTP routes (page, health) need no user: no token is not an event.
        await self._authenticate(req, required=False)

    async def process_request_ws(self, req: Any, ws: Any) -> None:
        await self._authenticate(req, required=True)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1), or ``None``.

    Plain HTTP clients (the page's room list) send it there; a WebSocket from a
    browser cannot set headers and sends ``?token=``.
    """
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class DevAuthMiddleware:
    """Development mode: trusts ``?user=Name``. Never use it where others can connect."""

    def _authenticate(self, req: Any) -> None:
        name = req.get_param("user")
        if name is None:
            return
        try:
            req.context.user = User(check_user_name(name))
        except InvalidUserName:
            log.info("auth.rejected", reason="invalid_user_name")

    async def process_request(self, req: Any, resp: Any) -> None:
        self._authenticate(req)

    async def process_request_ws(self, req: Any, ws: Any) -> None:
        self._authenticate(req)


def auth_middleware(settings: Settings) -> JwtAuthMiddleware | DevAuthMiddleware:
    """The middleware for ``settings.auth``.

    Raises:
        ValueError: jwt mode without a key, or the key file cannot be read (load
            settings with ``load_settings``, which checks this first).
    """
    if settings.auth == "dev":
        return DevAuthMiddleware()
    config = JwtConfig(
        secret=settings.jwt_secret,
        algorithms=settings.jwt_algorithm_list,
        user_claim=settings.jwt_user_claim,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        leeway_s=settings.jwt_leeway_s,
    )
    return JwtAuthMiddleware(config, keys=_key_source(settings))


def _key_source(settings: Settings) -> KeySource | None:
    if settings.jwt_public_key_file is not None:
        return StaticKeys(PublicKeys(default=load_public_key_file(settings.jwt_public_key_file)))
    if settings.jwt_jwks_url is not None:
        return JwksKeys(
            settings.jwt_jwks_url,
            timeout_s=settings.jwt_jwks_timeout_s,
            max_age_s=settings.jwt_jwks_max_age_s,
            min_refresh_s=settings.jwt_jwks_min_refresh_s,
        )
    if settings.jwt_secret is None:
        raise ValueError("CHAT_AUTH=jwt requires CHAT_JWT_SECRET, a public key file or a JWKS URL")
    return None
