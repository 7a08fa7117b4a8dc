"""What ``chat up`` will start, decided before anything starts (pure: no I/O).

The plan names every child, its module, its ports and its environment, and checks
each service's settings with that service's own ``load_settings``, so a bad
``CHAT_*`` value stops the launcher with exit 2 before any process exists.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

from chat_announcer.settings import load_settings as announcer_settings
from chat_gateway.settings import Settings as GatewaySettings
from chat_gateway.settings import load_settings as gateway_settings
from chat_rooms.settings import load_settings as rooms_settings

from .errors import ConfigError

__all__ = [
    "DEFAULT_METRICS_PORT",
    "DEFAULT_NATS_PORT",
    "DEFAULT_PORT",
    "ChildSpec",
    "Plan",
    "UpOptions",
    "gateway_ports",
    "make_plan",
]

#: The gateway's own default CHAT_PORT; further gateways take the next ports.
DEFAULT_PORT: Final = 8000
#: The rooms service's default CHAT_METRICS_PORT; the announcer's (9102) is next to it.
DEFAULT_METRICS_PORT: Final = 9101
#: nats-server's standard client port, so a plain ``nats://127.0.0.1:4222`` works.
DEFAULT_NATS_PORT: Final = 4222
#: Children always log JSON: the launcher parses their lines (readiness, rendering).
_FORCED: Final = {"CHAT_LOG_FORMAT": "json"}


@dataclasses.dataclass(frozen=True)
class UpOptions:
    """The options of ``chat up``.

    Attributes:
        gateways: How many gateways to run.
        port: The first gateway's port; the others take the next ones.
        host: The interface the gateways listen on.
        metrics_port: The rooms service's metrics port, the announcer's is the next
            one; 0 lets each pick a free port.
        nats_port: Port of the nats-server the launcher starts (when CHAT_NATS_URL
            is unset).
    """

    gateways: int = 1
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    metrics_port: int = DEFAULT_METRICS_PORT
    nats_port: int = DEFAULT_NATS_PORT


@dataclasses.dataclass(frozen=True)
class ChildSpec:
    """One service process to start.

    Attributes:
        name: How the launcher calls it in its output (``rooms``, ``gateway-8000``).
        module: Run as ``python -m <module>``.
        env: Its complete environment.
        port: The port it is asked to listen on (0: any free one).
    """

    name: str
    module: str
    env: Mapping[str, str] = dataclasses.field(repr=False)
    port: int


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything ``chat up`` starts, in order.

    Attributes:
        nats_url: The URL every service connects to.
        own_nats: True when the launcher starts nats-server itself.
        groups: Children in start order; each group must be ready before the next.
        gateway: The gateways' settings (auth mode, JWT key and claims).
        generated_secret: True when the JWT key was made up for this session.
    """

    nats_url: str
    own_nats: bool
    groups: tuple[tuple[ChildSpec, ...], ...]
    gateway: GatewaySettings = dataclasses.field(repr=False)
    generated_secret: bool

    @property
    def gateways(self) -> tuple[ChildSpec, ...]:
        """The gateway children (the last group)."""
        return self.groups[-1]


def gateway_ports(base: int, count: int) -> list[int]:
    """Consecutive ports from ``base``, one per gateway.

    Raises:
        ConfigError: A port would be outside 1-65535.
    """
    if count < 1:
        raise ConfigError("at least one gateway is needed")
    if base < 1 or base + count - 1 > 65535:
        raise ConfigError(f"--port {base} with {count} gateway(s) leaves the range 1-65535")
    return [base + i for i in range(count)]


def make_plan(
    options: UpOptions, environ: Mapping[str, str], new_secret: Callable[[], str]
) -> Plan:
    """Decide what to start.

    Args:
        options: The command-line options.
        environ: The launcher's environment; every child inherits it.
        new_secret: Makes a JWT key, called only in jwt mode without CHAT_JWT_SECRET.

    Raises:
        ConfigError: An option or a ``CHAT_*`` value is invalid (the message says which).
    """
    external = environ.get("CHAT_NATS_URL", "").strip()
    nats_url = external or f"nats://127.0.0.1:{options.nats_port}"
    base = {**environ, **_FORCED, "CHAT_NATS_URL": nats_url, "CHAT_HOST": options.host}
    generated = environ.get("CHAT_AUTH", "jwt") == "jwt" and not environ.get("CHAT_JWT_SECRET")
    # Gateways share rooms over NATS; the single-process `memory` backend would not.
    gateway_env = {**base, "CHAT_BACKEND": "nats"}
    if generated:
        gateway_env["CHAT_JWT_SECRET"] = new_secret()
    rooms_port, announcer_port = _metrics_ports(options.metrics_port)
    rooms = ChildSpec("rooms", "chat_rooms", _with(base, CHAT_METRICS_PORT=rooms_port), rooms_port)
    announcer = ChildSpec(
        "announcer", "chat_announcer", _with(base, CHAT_METRICS_PORT=announcer_port), announcer_port
    )
    gateways = tuple(
        ChildSpec(f"gateway-{port}", "chat_gateway", _with(gateway_env, CHAT_PORT=port), port)
        for port in gateway_ports(options.port, options.gateways)
    )
    _check("rooms", rooms_settings, rooms.env)
    _check("announcer", announcer_settings, announcer.env)
    settings: GatewaySettings = _check("gateway", gateway_settings, gateways[0].env)
    return Plan(
        nats_url=nats_url,
        own_nats=not external,
        groups=((rooms,), (announcer,), gateways),
        gateway=settings,
        generated_secret=generated,
    )


def _metrics_ports(base: int) -> tuple[int, int]:
    if base == 0:
        return 0, 0
    if not 1 <= base <= 65534:
        raise ConfigError(f"--metrics-port {base} must be 0 or within 1-65534")
    return base, base + 1


def _with(env: Mapping[str, str], **extra: int) -> dict[str, str]:
    return {**env, **{key: str(value) for key, value in extra.items()}}


def _check(service: str, load: Callable[[Mapping[str, str]], Any], env: Mapping[str, str]) -> Any:
    try:
        return load(env)
    except (msgspec.ValidationError, ValueError) as exc:
        # The services' messages name the variable and never echo a secret.
        raise ConfigError(f"invalid configuration for {service}: {exc}") from None
