"""The README documents every setting a service reads, and nothing that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from chat_announcer.settings import Settings as AnnouncerSettings
from chat_gateway.settings import Settings as GatewaySettings
from chat_rooms.settings import Settings as RoomsSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def variables(cls: type[msgspec.Struct]) -> set[str]:
    return {f"CHAT_{name.upper()}" for name in cls.__struct_fields__}


def documented() -> set[str]:
    table = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(CHAT_[A-Z0-9_]+)` \|", table, flags=re.MULTILINE))


def test_every_setting_is_documented() -> None:
    read = variables(GatewaySettings) | variables(RoomsSettings) | variables(AnnouncerSettings)
    assert read - documented() == set(), "settings missing from the README table"


def test_every_documented_setting_exists() -> None:
    read = variables(GatewaySettings) | variables(RoomsSettings) | variables(AnnouncerSettings)
    assert documented() - read == set(), "README documents settings no service reads"


def test_every_close_code_is_documented() -> None:
    from chat_protocol.close_codes import ChatCloseCode, CloseCode

    text = README.read_text()
    for code in [*CloseCode, *ChatCloseCode]:
        assert f"| {int(code)} |" in text, f"close code {int(code)} ({code.name}) undocumented"


def exposed_metric_names() -> set[str]:
    from nats.aio.client import Client
    from prometheus_client import CollectorRegistry

    from chat_announcer.metrics import Metrics as AnnouncerMetrics
    from chat_gateway.app import create_app
    from chat_gateway.metrics import Metrics as GatewayMetrics
    from chat_gateway.settings import load_settings
    from chat_rooms.metrics import Metrics as RoomsMetrics
    from chat_runtime.natsconn import NatsConnection
    from falcon_pachinko.backends.nats import NatsProbe
    from falcon_pachinko.directory import Directory
    from falcon_pachinko.subjects import Subjects

    registry = CollectorRegistry()
    gateway = GatewayMetrics(registry)
    create_app(load_settings({"CHAT_AUTH": "dev"}), registry=registry, metrics=gateway)
    # A gateway on NATS also reports its self-probe (never connected here).
    gateway.watch_probe(NatsProbe(Client(), Subjects("chat"), "node"))
    RoomsMetrics(registry, Directory(Client(), Subjects("chat"), ttl_s=1))
    AnnouncerMetrics(registry)
    for service in ("gateway", "rooms", "announcer"):
        NatsConnection(service, registry)
    names = set()
    for family in registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        names.add(family.name + suffix)
    return names


def test_every_metric_is_documented() -> None:
    table = README.read_text().split("| metric | type | meaning |", 1)[1].split("\n\n", 1)[0]
    documented_names = set(re.findall(r"^\| `(chat_[a-z_<>]+)", table, flags=re.MULTILINE))
    for name in exposed_metric_names():
        generic = re.sub(r"^chat_(gateway|rooms|announcer)_nats_", "chat_<service>_nats_", name)
        assert name in documented_names or generic in documented_names, name
