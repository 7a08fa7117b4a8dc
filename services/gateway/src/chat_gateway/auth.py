"""Authentication: who is connecting. Sets ``req.context.user`` or leaves it unset.

The resource rejects a connection without a user at the handshake (HTTP 403).

Two modes, chosen by ``CHAT_AUTH``:

* ``jwt``: the client sends an HS256 JWT as ``?token=``. :func:`verify_token` is the
  pure core (no I/O; the time is a parameter): it returns a :class:`User` or a
  :class:`Rejected` with a machine-readable reason, and never raises for bad input.
  :class:`JwtAuthMiddleware` adapts it to Falcon and logs ``auth.rejected``.
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

from chat_protocol import InvalidUserName, check_user_name

from .settings import Secret

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
    "issue_token",
    "verify_token",
]

log = structlog.get_logger(__name__)

#: The only algorithm accepted. Fixed here, never taken from the token's header
#: (RFC 8725 §2.1, §3.1), so ``none`` and asymmetric algorithms are refused.
ALGORITHM: Final = "HS256"

#: Longest token looked at. A gateway token (name, exp, iat, aud, iss) is about
#: 250 characters; 4 KiB leaves room for extra claims and bounds the parsing work
#: an anonymous client can cause.
MAX_TOKEN_CHARS: Final = 4096

#: Why a credential was refused: the ``reason`` of the ``auth.rejected`` log event.
#:
#: * ``missing_token``: no ``?token=``, or an empty one.
#: * ``malformed``: not a compact JWS, bad base64 or JSON, or over MAX_TOKEN_CHARS.
#: * ``bad_algorithm``: the header's ``alg`` is not HS256 (``none``, HS512, RS256...).
#: * ``bad_signature``: signed with another key, or altered.
#: * ``expired``: ``exp`` is past, beyond the leeway.
#: * ``not_yet_valid``: ``nbf`` or ``iat`` is in the future, beyond the leeway.
#: * ``wrong_audience``: ``aud`` differs from CHAT_JWT_AUDIENCE (or is set when that is not).
#: * ``wrong_issuer``: ``iss`` differs from CHAT_JWT_ISSUER.
#: * ``invalid_claims``: a required claim (``exp``, the name claim, ``aud``/``iss`` when
#:   configured) is missing or mistyped, or the name is not a valid chat user name.
#: * ``invalid_user_name``: development mode only, ``?user=`` is not a valid name.
Reason = Literal[
    "missing_token",
    "malformed",
    "bad_algorithm",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_audience",
    "wrong_issuer",
    "invalid_claims",
    "invalid_user_name",
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
        name: The user's chat name.
        expires_at: When the credential expires (the token's ``exp``, Unix
            seconds); ``None`` when it does not (development mode).
    """

    name: str
    expires_at: float | None = None


class Rejected(msgspec.Struct, frozen=True):
    """A refused credential. ``reason`` is safe to log; it holds nothing the client sent."""

    reason: Reason


class JwtConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How tokens are verified (from the ``CHAT_JWT_*`` settings).

    Attributes:
        secret: The HS256 key.
        user_claim: The claim holding the user's chat name.
        audience: Required ``aud`` value; ``None`` refuses tokens that carry one.
        issuer: Required ``iss`` value; ``None`` accepts any issuer.
        leeway_s: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
    """

    secret: Secret
    user_claim: str = "sub"
    audience: str | None = None
    issuer: str | None = None
    leeway_s: float = 5.0


def verify_token(token: str | None, config: JwtConfig, now: float) -> User | Rejected:
    """Check a token and return who it names.

    Signature, algorithm, required claims, ``aud`` and ``iss`` are PyJWT's checks;
    the time claims are checked here against ``now``, so the result depends only on
    the arguments.

    Args:
        token: The ``?token=`` value, or ``None`` when there is none.
        config: The verification settings.
        now: The current time, in seconds since the epoch.

    Returns:
        The :class:`User` named by ``config.user_claim``, or :class:`Rejected` with
        the reason. Bad tokens never raise.
    """
    if not token:
        return Rejected("missing_token")
    if len(token) > MAX_TOKEN_CHARS:
        return Rejected("malformed")
    try:
        claims = _decode(token, config)
    except jwt.PyJWTError as exc:
        return Rejected(_reason(exc))
    reason = _check_times(claims, now, config.leeway_s)
    if reason is not None:
        return Rejected(reason)
    name = claims[config.user_claim]
    try:
        return User(check_user_name(name), expires_at=float(claims["exp"]))
    except InvalidUserName:
        return Rejected("invalid_claims")


def _decode(token: str, config: JwtConfig) -> dict[str, Any]:
    # NOTE(gateway): PyJWT reads the wall clock itself, so its exp/nbf/iat checks are
    # off and _check_times applies the same rules to the injected `now`
    # (https://pyjwt.readthedocs.io/en/stable/api.html#jwt.decode).
    return jwt.decode(
        token,
        config.secret.reveal(),
        algorithms=[ALGORITHM],
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


def _is_numeric_date(value: object) -> bool:
    # JSON true is a Python int, and Python's json accepts Infinity and NaN.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def issue_token(
    secret: str,
    name: str,
    *,
    ttl_s: float = 3600,
    now: float | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    claim: str = "sub",
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
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


class JwtAuthMiddleware:
    """Production mode: ``?token=`` must be a valid HS256 JWT (see :func:`verify_token`)."""

    def __init__(self, config: JwtConfig, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock

    def _authenticate(self, req: Any, *, required: bool) -> None:
        token = req.get_param("token")
        if token is None and not required:
            return
        result = verify_token(token, self._config, self._clock())
        if isinstance(result, User):
            req.context.user = result
        else:
            # Only the reason: never the token, the query string or the claims.
            log.info("auth.rejected", reason=result.reason)

    async def process_request(self, req: Any, resp: Any) -> None:
        # Plain HTTP routes (page, health) need no user: no token is not an event.
        self._authenticate(req, required=False)

    async def process_request_ws(self, req: Any, ws: Any) -> None:
        self._authenticate(req, required=True)


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
        ValueError: jwt mode without a secret (load settings with ``load_settings``,
            which checks this first).
    """
    if settings.auth == "dev":
        return DevAuthMiddleware()
    if settings.jwt_secret is None:
        raise ValueError("CHAT_AUTH=jwt requires CHAT_JWT_SECRET")
    return JwtAuthMiddleware(
        JwtConfig(
            secret=settings.jwt_secret,
            user_claim=settings.jwt_user_claim,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway_s=settings.jwt_leeway_s,
        )
    )
