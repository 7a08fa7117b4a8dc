"""Which web pages may open a WebSocket to the gateway: the ``Origin`` check.

Browsers send cookies and other ambient credentials with a WebSocket handshake
from any page, and the same-origin policy does not apply to WebSockets, so a
foreign page could otherwise speak to the gateway as its visitor (cross-site
WebSocket hijacking). Browsers always send ``Origin`` on a WebSocket handshake;
the gateway accepts one only if it is allowed.

The decision is pure (no I/O) and exact: after normalisation, an origin is
allowed if and only if it *equals* an allowed one. There are no wildcards in
host names and no suffix or prefix matching, so ``https://chat.example.com.evil.com``
and ``https://evilchat.example.com`` never pass for ``https://chat.example.com``.

Normalisation (RFC 6454 section 6.2): ``scheme://host[:port]``, scheme and host
lower-cased, the default port of ``http`` (80) and ``https`` (443) removed,
leading zeros of the port dropped. Anything else (a path, a user, a query,
``null``, an empty host) is not an origin, is never allowed, and is refused in
``CHAT_ALLOWED_ORIGINS``.

Settings (``CHAT_ALLOWED_ORIGINS``):

* unset or empty: the gateway's **own origin** only, so its page works. The own
  origin is built from the handshake itself: the scheme uvicorn reports
  (``ws``/``wss``, taken as ``http``/``https``; uvicorn replaces it with
  ``X-Forwarded-Proto`` only when the peer is in ``CHAT_FORWARDED_ALLOW_IPS``)
  and the ``Host`` header, normalised as above. ``X-Forwarded-Host`` is never
  read. A handshake without a usable ``Host`` has no own origin.
* a comma-separated list of origins: exactly those (the own origin is not
  added).
* ``*``: every origin; allowed only with ``CHAT_AUTH=dev`` (settings refuse it
  otherwise).

Handshakes *without* an ``Origin`` header are accepted: they do not come from a
browser page, so nothing ambient rides on them, and non-browser clients (the
system tests, bots, the CLI) need not invent one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

import msgspec

__all__ = [
    "ANY_ORIGIN",
    "OriginPolicy",
    "is_allowed",
    "normalise_origin",
    "own_origin",
    "parse_allowed_origins",
]

#: The allowlist entry that allows every origin (development only).
ANY_ORIGIN: Final = "*"

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# The scheme uvicorn puts in a WebSocket scope, and the page scheme it stands for.
_PAGE_SCHEMES: Final = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
# RFC 3986 scheme; a reg-name of unreserved and sub-delims characters (no '%',
# '@', ':', '/', '[', ']' or whitespace), or a bracketed IPv6 literal; a port.
_ORIGIN: Final = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<host>[A-Za-z0-9._~!$&'()+;=-]+|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_HOST: Final = re.compile(
    r"(?P<host>[A-Za-z0-9._~!$&'()+;=-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)
#: Longest origin looked at: a host name is at most 253 characters.
MAX_ORIGIN_CHARS: Final = 300


class OriginPolicy(msgspec.Struct, frozen=True):
    """The allowed origins, normalised; build it with :func:`parse_allowed_origins`.

    Attributes:
        origins: Exact origins allowed. Empty means "the own origin only".
        any_origin: ``*`` was given: every origin is allowed.
    """

    origins: frozenset[str] = frozenset()
    any_origin: bool = False


def normalise_origin(text: str) -> str | None:
    """The normal form of an origin, or ``None`` if ``text`` is not one.

    Args:
        text: An ``Origin`` header value or an allowlist entry.

    Returns:
        ``scheme://host[:port]`` in lower case without a default port, or ``None``
        (``null``, a path, a user part, a bad port...). Never raises.
    """
    if len(text) > MAX_ORIGIN_CHARS:
        return None
    match = _ORIGIN.fullmatch(text)
    if match is None:
        return None
    return _join(match["scheme"].lower(), match["host"], match["port"])


def own_origin(scheme: str, host_header: str | None) -> str | None:
    """The origin of the gateway's own page, from the handshake's scheme and ``Host``.

    Args:
        scheme: The request scheme as the server reports it (``ws``, ``wss``,
            ``http`` or ``https``; uvicorn applies ``X-Forwarded-Proto`` from
            trusted proxies only).
        host_header: The ``Host`` header, or ``None``.

    Returns:
        The normalised origin, or ``None`` when the host or scheme is unusable.
    """
    page_scheme = _PAGE_SCHEMES.get(scheme.lower())
    if page_scheme is None or not host_header or len(host_header) > MAX_ORIGIN_CHARS:
        return None
    match = _HOST.fullmatch(host_header.strip())
    if match is None:
        return None
    return _join(page_scheme, match["host"], match["port"])


def parse_allowed_origins(text: str) -> OriginPolicy:
    """Read ``CHAT_ALLOWED_ORIGINS``: comma-separated origins, or ``*``.

    Raises:
        ValueError: An entry is not an origin (the message names the entry), or
            ``*`` is mixed with origins.
    """
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if ANY_ORIGIN in entries:
        if len(entries) > 1:
            raise ValueError("CHAT_ALLOWED_ORIGINS: '*' cannot be combined with origins")
        return OriginPolicy(any_origin=True)
    return OriginPolicy(origins=frozenset(_parse_entries(entries)))


def _parse_entries(entries: Iterable[str]) -> Iterable[str]:
    for entry in entries:
        origin = normalise_origin(entry)
        if origin is None:
            raise ValueError(
                f"CHAT_ALLOWED_ORIGINS: {entry[:80]!r} is not an origin "
                "(scheme://host[:port], no path, e.g. https://chat.example.com)"
            )
        yield origin


def is_allowed(origin: str, policy: OriginPolicy, own: str | None) -> bool:
    """Decide whether a handshake's ``Origin`` header value is allowed.

    Args:
        origin: The ``Origin`` header (present; a missing header is not decided here).
        policy: The allowlist.
        own: The gateway's own origin (:func:`own_origin`), used when the
            allowlist is empty.

    Returns:
        ``True`` iff the normalised ``origin`` equals an allowed origin (or the
        policy allows any). ``null`` and malformed values are never allowed.
    """
    normal = normalise_origin(origin)
    if normal is None:
        return False
    if policy.any_origin:
        return True
    if policy.origins:
        return normal in policy.origins
    return own is not None and normal == own


def _join(scheme: str, host: str, port: str | None) -> str | None:
    number = None if port is None else int(port)
    if number is not None and not 0 < number <= 65535:
        return None
    if number == _DEFAULT_PORTS.get(scheme):
        number = None
    suffix = "" if number is None else f":{number}"
    return f"{scheme}://{host.lower()}{suffix}"
