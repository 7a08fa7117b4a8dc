"""The Origin decision: exact equality after normalisation, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat_gateway.origin import (
    OriginPolicy,
    is_allowed,
    normalise_origin,
    own_origin,
    parse_allowed_origins,
)

CHAT = parse_allowed_origins("https://chat.example.com, http://localhost:8000")


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("https://chat.example.com", "https://chat.example.com"),
        ("HTTPS://Chat.Example.COM", "https://chat.example.com"),
        ("https://chat.example.com:443", "https://chat.example.com"),
        ("http://chat.example.com:80", "http://chat.example.com"),
        ("http://chat.example.com:0080", "http://chat.example.com"),
        ("https://chat.example.com:8443", "https://chat.example.com:8443"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("null", None),
        ("", None),
        ("https://", None),
        ("https://chat.example.com/", None),
        ("https://user@chat.example.com", None),
        ("https://chat.example.com:0", None),
        ("https://chat.example.com:65536", None),
        ("https://*.example.com", None),
        ("https://chat.example.com?x", None),
        ("https://chat.example.com\r\n", None),
    ],
)
def test_normalisation(text: str, normal: str | None) -> None:
    assert normalise_origin(text) == normal


@pytest.mark.parametrize(
    "origin",
    [
        "https://chat.example.com.evil.com",
        "https://evilchat.example.com",
        "null",
        "http://chat.example.com",
        "https://chat.example.com:8443",
        "https://localhost:8000",
        "http://localhost",
    ],
)
def test_lookalikes_are_refused(origin: str) -> None:
    assert not is_allowed(origin, CHAT, own="https://chat.example.com.evil.com")


def test_allowed_origins_pass_in_any_spelling() -> None:
    assert is_allowed("HTTPS://CHAT.example.com:443", CHAT, own=None)
    assert is_allowed("http://LOCALHOST:8000", CHAT, own=None)


def test_an_empty_allowlist_means_the_own_origin_only() -> None:
    own = own_origin("ws", "127.0.0.1:8000")
    assert own == "http://127.0.0.1:8000"
    assert is_allowed("http://127.0.0.1:8000", OriginPolicy(), own)
    assert not is_allowed("http://127.0.0.1:8001", OriginPolicy(), own)
    assert not is_allowed("https://127.0.0.1:8000", OriginPolicy(), own)
    assert not is_allowed("http://127.0.0.1:8000", OriginPolicy(), own=None)


@pytest.mark.parametrize(
    ("scheme", "host", "own"),
    [
        ("wss", "chat.example.com", "https://chat.example.com"),
        ("wss", "chat.example.com:443", "https://chat.example.com"),
        ("ws", "Chat.Example.com:80", "http://chat.example.com"),
        ("https", "chat.example.com", "https://chat.example.com"),
        ("ws", None, None),
        ("ws", "", None),
        ("ws", "a/b", None),
        ("gopher", "chat.example.com", None),
    ],
)
def test_own_origin_comes_from_the_scheme_and_the_host_header(
    scheme: str, host: str | None, own: str | None
) -> None:
    assert own_origin(scheme, host) == own


def test_star_allows_any_well_formed_origin_but_not_null() -> None:
    anything = parse_allowed_origins("*")
    assert is_allowed("https://anything.example", anything, own=None)
    assert not is_allowed("null", anything, own=None)


@pytest.mark.parametrize(
    "text", ["https://chat.example.com/", "chat.example.com", "*,https://a.example", "null"]
)
def test_bad_allowlists_are_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ValueError, match="CHAT_ALLOWED_ORIGINS"):
        parse_allowed_origins(text)


hosts = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True)
origins = st.builds(
    lambda scheme, host, port: f"{scheme}://{host}" + ("" if port is None else f":{port}"),
    st.sampled_from(["http", "https", "HTTP", "Https"]),
    hosts.map(lambda h: h.upper() if len(h) % 2 else h),
    st.none() | st.integers(1, 65535),
)


@given(allowed=st.lists(origins, max_size=5), origin=origins)
def test_an_origin_is_allowed_iff_it_equals_an_allowlisted_one(
    allowed: list[str], origin: str
) -> None:
    policy = OriginPolicy(origins=frozenset(normalise_origin(a) or "" for a in allowed))
    expected = normalise_origin(origin) in {normalise_origin(a) for a in allowed}
    assert is_allowed(origin, policy, own=None) == expected


@given(origin=origins, suffix=st.sampled_from([".evil.com", "x", "/", ":1", "."]))
def test_an_extended_origin_never_passes_for_the_allowed_one(origin: str, suffix: str) -> None:
    normal = normalise_origin(origin)
    assert normal is not None
    policy = OriginPolicy(origins=frozenset({normal}))
    extended = normal + suffix
    assert is_allowed(extended, policy, own=None) == (normalise_origin(extended) == normal)


@given(text=st.text(max_size=200))
def test_any_header_value_is_decided_without_raising(text: str) -> None:
    assert isinstance(is_allowed(text, CHAT, own="https://chat.example.com"), bool)
