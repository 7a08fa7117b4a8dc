"""Settings from ``CHAT_*`` environment variables, typed and validated once at startup.

Each service declares one frozen ``msgspec.Struct`` that extends
:class:`CommonSettings`; field ``x`` is read from ``CHAT_X``. Values are converted
leniently from strings (``"8000"`` -> ``8000``) and checked against the field's
constraints; an error names the variable, so an operator sees
``CHAT_PORT: Expected int >= 1`` rather than a path into a struct.

Every limit has an explicit default next to its field, with the reason for it; no
library default is inherited silently.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, NoReturn, TypeVar, final

import msgspec
from msgspec import Meta

__all__ = [
    "ENV_PREFIX",
    "CommonSettings",
    "Port",
    "PositiveFloat",
    "Secret",
    "load_settings",
]

ENV_PREFIX: Final = "CHAT_"

PositiveFloat = Annotated[float, Meta(gt=0)]
#: A TCP port; 0 picks a free one (the service logs the port it bound).
Port = Annotated[int, Meta(ge=0, le=65535)]
_SERVER = r"(nats|tls|ws|wss)://[^\s,]+"
#: One NATS server URL, or several separated by commas.
NatsUrls = Annotated[str, Meta(pattern=rf"^\s*{_SERVER}(\s*,\s*{_SERVER})*\s*\Z")]


@final
class Secret:
    """A string that must never be shown: ``repr`` and ``str`` are redacted.

    Call :meth:`reveal` at the one place that needs the value (signing or
    verifying), so that logging a settings object never prints it.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The secret value itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Secret is immutable")


class CommonSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings every service reads."""

    #: NATS server URL(s), comma-separated for a cluster.
    nats_url: NatsUrls = "nats://127.0.0.1:4222"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``json`` for machines (one object per line), ``console`` for people.
    log_format: Literal["json", "console"] = "json"
    #: Seconds between NATS reconnect attempts (nats-py's default is 2 s; a shorter
    #: wait shortens the outage a NATS restart causes).
    nats_reconnect_wait_s: PositiveFloat = 0.5
    #: Reconnect attempts before the service gives up and exits non-zero so its
    #: supervisor restarts it; -1 (or 0, as nats-py treats it) retries forever.
    #: 120 x 0.5 s = one minute.
    nats_max_reconnect_attempts: Annotated[int, Meta(ge=-1)] = 120
    #: Seconds a service keeps trying to reach NATS at startup (serving its health
    #: endpoints, not ready) before it exits 1; 0 keeps trying forever, so a pod
    #: started before NATS becomes ready by itself once NATS is there.
    nats_connect_timeout_s: Annotated[float, Meta(ge=0)] = 0.0
    #: Bytes nats-py buffers while disconnected (its default is 2 MiB); publishes
    #: beyond it fail instead of growing memory.
    nats_pending_bytes: Annotated[int, Meta(ge=64 * 1024)] = 8 * 1024 * 1024
    #: Seconds, at shutdown, to deliver what is buffered and unsubscribe before the
    #: connection is closed anyway. Orchestrator grace periods must cover it.
    nats_drain_timeout_s: PositiveFloat = 5.0

    @property
    def nats_servers(self) -> list[str]:
        return [server.strip() for server in self.nats_url.split(",")]


S = TypeVar("S", bound=msgspec.Struct)

_PATH: Final = re.compile(r"\s*-\s*at\s*`\$\.(\w+)(\[[^`]*\])?`")


def _decode_hook(typ: type, value: Any) -> Any:
    """msgspec ``dec_hook``: builds the types msgspec does not know (:class:`Secret`)."""
    if typ is Secret:
        if isinstance(value, Secret):
            return value
        if isinstance(value, str):
            return Secret(value)
        # A TypeError becomes a ValidationError; its text must not echo the value.
        raise TypeError("Expected `str`")
    raise NotImplementedError(f"no decoder for {typ!r}")


def load_settings(cls: type[S], environ: Mapping[str, str]) -> S:
    """Build ``cls`` from the ``CHAT_*`` variables it declares; others are ignored.

    Raises:
        msgspec.ValidationError: A variable's value has the wrong type or range; the
            message names the variable.
        ValueError: A rule across several variables is broken.
    """
    fields = set(cls.__struct_fields__)
    values = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in fields
    }
    try:
        return msgspec.convert(values, cls, strict=False, dec_hook=_decode_hook)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH.search(message)
        if match is not None:
            variable = ENV_PREFIX + match.group(1).upper()
            message = f"{variable}: {_PATH.sub('', message)}"
        raise msgspec.ValidationError(message) from None
