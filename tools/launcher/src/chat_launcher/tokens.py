"""``chat token NAME``: a JWT the gateways accept, signed with CHAT_JWT_SECRET."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TextIO

import msgspec

from chat_gateway.auth import issue_token
from chat_gateway.settings import Settings, load_settings
from chat_protocol.errors import InvalidUserName

from .errors import ConfigError

__all__ = ["DEFAULT_TTL_S", "mint", "run_token", "token_settings"]

#: issue_token's own default: one hour.
DEFAULT_TTL_S: Final = 3600.0


def token_settings(environ: Mapping[str, str]) -> Settings:
    """The gateway's JWT settings from ``environ``, validated as the gateway does.

    Raises:
        ConfigError: CHAT_JWT_SECRET is missing or too short, or another CHAT_*
            value the gateway reads is invalid.
    """
    if not environ.get("CHAT_JWT_SECRET"):
        raise ConfigError(
            "CHAT_JWT_SECRET is not set: tokens are signed with the gateways' HS256 key "
            "(at least 32 bytes)"
        )
    try:
        # jwt mode whatever CHAT_AUTH says: that is the mode that checks the key.
        return load_settings({**environ, "CHAT_AUTH": "jwt"})
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def mint(settings: Settings, name: str, ttl_s: float, now: float | None = None) -> str:
    """A token for ``name`` that gateways running with ``settings`` accept.

    Raises:
        InvalidUserName: ``name`` is not a valid chat user name.
    """
    assert settings.jwt_secret is not None, "load the settings in jwt mode"
    return issue_token(
        settings.jwt_secret.reveal(),
        name,
        ttl_s=ttl_s,
        now=now,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        claim=settings.jwt_user_claim,
    )


def run_token(name: str, ttl_s: float, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """Print a token for ``name`` on ``out``.

    Returns:
        0, or 2 with one line on ``err`` when the name or the configuration is invalid.
    """
    try:
        token = mint(token_settings(environ), name, ttl_s)
    except ConfigError as exc:
        print(f"chat token: {exc}", file=err)
        return 2
    except InvalidUserName as exc:
        print(f"chat token: invalid name {name!r}: {exc}", file=err)
        return 2
    print(token, file=out, flush=True)
    return 0
