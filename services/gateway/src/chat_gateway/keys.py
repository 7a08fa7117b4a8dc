"""The public keys RS256/ES256 tokens are verified with: a PEM file, or a JWK Set.

:class:`PublicKeys` and the parsers are pure: bytes or a decoded JSON document
in, keys out. :class:`JwksKeys` is the adapter that fetches the issuer's JWK Set
over HTTP (PyJWT's ``PyJWKClient``, in a worker thread so the event loop never
blocks), and caches it:

* a token whose ``kid`` is known uses the cached keys: no fetch per handshake;
* the cache is refetched once it is older than ``max_age_s`` (the old keys stay
  in use if that fails);
* a token with an unknown ``kid`` triggers a refetch, which is how a rotated key
  is picked up, but at most one per ``min_refresh_s``, so tokens with made-up key
  ids cannot turn handshakes into fetches;
* one fetch at a time, bounded by ``timeout_s``; concurrent handshakes wait for it.

Only public RSA (2048+ bits) and EC P-256 keys are kept: a symmetric (``oct``)
or private key in the set is ignored, so a JWKS can never supply an HMAC secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import KeysUnavailable

__all__ = [
    "MIN_RSA_KEY_BITS",
    "JwksKeys",
    "KeySource",
    "PublicKey",
    "PublicKeys",
    "StaticKeys",
    "load_public_key",
    "load_public_key_file",
    "parse_jwks",
]

log = structlog.get_logger(__name__)

#: Smallest RSA key accepted (NIST SP 800-131A).
MIN_RSA_KEY_BITS: Final = 2048

#: A public key a token can be verified with.
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class PublicKeys:
    """The public keys tokens may be signed for, passed to ``verify_token``.

    Attributes:
        by_kid: Keys by their ``kid`` (a JWK Set).
        default: The one configured key (a PEM file), used whatever the ``kid``.
    """

    by_kid: Mapping[str, PublicKey] = field(default_factory=dict)
    default: PublicKey | None = None

    def find(self, kid: str | None) -> PublicKey | None:
        """The key for a token's ``kid``; without one, the only key if there is one."""
        if self.default is not None:
            return self.default
        if kid is None:
            only = list(self.by_kid.values())
            return only[0] if len(only) == 1 else None
        return self.by_kid.get(kid)


def usable_key(key: object) -> PublicKey | None:
    """``key`` if tokens may be verified with it: public RSA 2048+ or EC P-256."""
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_KEY_BITS:
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    return None


def load_public_key(pem: bytes) -> PublicKey:
    """Read a PEM public key.

    Raises:
        ValueError: It is not a PEM public key, or not RSA 2048+ / EC P-256.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise ValueError("not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    usable = usable_key(key)
    if usable is None:
        raise ValueError(f"only RSA keys of {MIN_RSA_KEY_BITS}+ bits and EC P-256 keys")
    return usable


def load_public_key_file(path: str) -> PublicKey:
    """Read ``CHAT_JWT_PUBLIC_KEY_FILE``.

    Raises:
        ValueError: The file cannot be read or holds no acceptable key (the message
            names the variable, never the file's content).
    """
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"CHAT_JWT_PUBLIC_KEY_FILE: cannot read {path}: {exc.strerror}") from None
    try:
        return load_public_key(pem)
    except ValueError as exc:
        raise ValueError(f"CHAT_JWT_PUBLIC_KEY_FILE: {path}: {exc}") from None


def parse_jwks(document: Any) -> PublicKeys:
    """The usable signing keys of a JWK Set document (RFC 7517 section 5).

    Keys without a ``kid``, with ``use`` other than ``sig``, symmetric, private or
    too weak are skipped.

    Raises:
        ValueError: The document is not a JWK Set.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys: dict[str, PublicKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            key = usable_key(jwt.PyJWK(entry).key)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        if key is not None:
            keys[kid] = key
    return PublicKeys(by_kid=keys)


class KeySource(Protocol):
    """Where the middleware gets public keys for a token's ``kid``."""

    async def keys_for(self, kid: str | None) -> PublicKeys:
        """The keys to verify a token with ``kid`` (they may still lack it).

        Raises:
            KeysUnavailable: The key is not known and the keys cannot be fetched.
        """
        ...


class StaticKeys:
    """Keys fixed at startup (a PEM file)."""

    def __init__(self, keys: PublicKeys) -> None:
        self._keys = keys

    async def keys_for(self, kid: str | None) -> PublicKeys:
        return self._keys


class JwksKeys:
    """A JWK Set fetched from ``url``, cached and refreshed (see the module docs).

    Args:
        url: The JWKS URL.
        timeout_s: Bound on one fetch.
        max_age_s: Cached keys are refetched after this long.
        min_refresh_s: Least time between two fetches for unknown key ids.
        clock: Monotonic seconds.
        fetch: Fetches and decodes the document (blocking; run in a thread).
            PyJWT's ``PyJWKClient.fetch_data`` by default.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 2.0,
        max_age_s: float = 300.0,
        min_refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[], Any] | None = None,
    ) -> None:
        client = jwt.PyJWKClient(url, cache_keys=False, cache_jwk_set=False, timeout=timeout_s)
        self._fetch = fetch if fetch is not None else client.fetch_data
        self._timeout_s = timeout_s
        self._max_age_s = max_age_s
        self._min_refresh_s = min_refresh_s
        self._clock = clock
        self._keys = PublicKeys()
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._failed = False
        self._lock = asyncio.Lock()
        #: Fetches attempted so far (for tests and logs).
        self.fetches = 0

    async def keys_for(self, kid: str | None) -> PublicKeys:
        if self._usable(kid):
            return self._keys
        async with self._lock:
            if self._usable(kid):
                return self._keys  # another handshake refreshed meanwhile
            attempted = self._attempted_at
            if attempted is None or self._clock() - attempted >= self._min_refresh_s:
                await self._refresh()
            elif self._keys.find(kid) is not None:
                return self._keys  # stale, but refetched recently: keep using it
            if self._failed and self._keys.find(kid) is None:
                raise KeysUnavailable("the JWK Set cannot be fetched")
            return self._keys

    def _usable(self, kid: str | None) -> bool:
        fetched = self._fetched_at
        fresh = fetched is not None and self._clock() - fetched < self._max_age_s
        return fresh and self._keys.find(kid) is not None

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            # NOTE(gateway): urllib honours the timeout per socket operation; this
            # outer bound, the same, also covers a slow trickle. A timed-out thread
            # finishes on its own, and its result is dropped.
            async with asyncio.timeout(self._timeout_s):
                document = await asyncio.to_thread(self._fetch)
            keys = parse_jwks(document)
        except (jwt.PyJWTError, OSError, TimeoutError, ValueError) as exc:
            self._failed = True
            log.warning("auth.jwks_unavailable", error=type(exc).__name__)
            return
        self._keys, self._fetched_at, self._failed = keys, self._clock(), False
        log.info("auth.jwks_fetched", keys=len(keys.by_kid))
