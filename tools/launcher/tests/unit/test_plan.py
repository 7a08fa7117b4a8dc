"""``chat up``'s plan: names, ports and environments, decided before anything starts."""

from __future__ import annotations

import pytest

from chat_launcher.errors import ConfigError
from chat_launcher.plan import Plan, UpOptions, gateway_ports, make_plan

SECRET = "s" * 43


def plan(environ: dict[str, str] | None = None, **options: int | str) -> Plan:
    return make_plan(UpOptions(**options), environ or {}, lambda: SECRET)  # type: ignore[arg-type]


def test_gateways_take_consecutive_ports_from_the_base() -> None:
    assert gateway_ports(8000, 3) == [8000, 8001, 8002]
    assert gateway_ports(65534, 2) == [65534, 65535]


@pytest.mark.parametrize(("base", "count"), [(65535, 2), (0, 1), (8000, 0)], ids=str)
def test_ports_outside_the_range_are_refused(base: int, count: int) -> None:
    with pytest.raises(ConfigError):
        gateway_ports(base, count)


def test_rooms_then_announcer_then_the_gateways() -> None:
    result = plan(gateways=2, port=8000)
    names = [[spec.name for spec in group] for group in result.groups]
    assert names == [["rooms"], ["announcer"], ["gateway-8000", "gateway-8001"]]
    assert [spec.module for group in result.groups for spec in group] == [
        "chat_rooms",
        "chat_announcer",
        "chat_gateway",
        "chat_gateway",
    ]


def test_each_child_gets_its_port() -> None:
    rooms, announcer, (first, second) = plan(gateways=2, port=9000, host="0.0.0.0").groups
    assert rooms[0].env["CHAT_METRICS_PORT"] == "9101"
    assert announcer[0].env["CHAT_METRICS_PORT"] == "9102"
    assert (first.env["CHAT_PORT"], second.env["CHAT_PORT"]) == ("9000", "9001")
    assert {spec.env["CHAT_HOST"] for spec in (first, second)} == {"0.0.0.0"}


def test_gateways_always_use_the_nats_backend() -> None:
    (gateway,) = plan({"CHAT_BACKEND": "memory"}).gateways
    assert gateway.env["CHAT_BACKEND"] == "nats"


def test_metrics_port_0_lets_both_pick_free_ports() -> None:
    rooms, announcer, _ = plan(metrics_port=0).groups
    assert rooms[0].env["CHAT_METRICS_PORT"] == announcer[0].env["CHAT_METRICS_PORT"] == "0"


def test_children_inherit_the_environment_and_always_log_json() -> None:
    result = plan({"CHAT_LOG_FORMAT": "console", "CHAT_LOG_LEVEL": "debug", "HOME": "/h"})
    for group in result.groups:
        for spec in group:
            assert spec.env["CHAT_LOG_FORMAT"] == "json"
            assert (spec.env["CHAT_LOG_LEVEL"], spec.env["HOME"]) == ("debug", "/h")


def test_without_chat_nats_url_the_launcher_runs_nats_on_the_chosen_port() -> None:
    result = plan(nats_port=14222)
    assert (result.own_nats, result.nats_url) == (True, "nats://127.0.0.1:14222")
    assert {spec.env["CHAT_NATS_URL"] for g in result.groups for spec in g} == {result.nats_url}


def test_with_chat_nats_url_the_launcher_uses_it() -> None:
    result = plan({"CHAT_NATS_URL": "nats://10.0.0.1:4222"})
    assert (result.own_nats, result.nats_url) == (False, "nats://10.0.0.1:4222")


def test_jwt_mode_without_a_secret_gets_one_for_the_gateways_only() -> None:
    result = plan(gateways=2)
    assert result.generated_secret
    assert result.gateway.jwt_secret is not None and result.gateway.jwt_secret.reveal() == SECRET
    rooms, announcer, gateways = result.groups
    assert all(spec.env["CHAT_JWT_SECRET"] == SECRET for spec in gateways)
    assert "CHAT_JWT_SECRET" not in rooms[0].env
    assert "CHAT_JWT_SECRET" not in announcer[0].env


def test_a_given_secret_is_used_and_none_is_made() -> None:
    given = "g" * 40
    result = plan({"CHAT_JWT_SECRET": given})
    assert not result.generated_secret
    assert result.gateway.jwt_secret is not None and result.gateway.jwt_secret.reveal() == given


def test_dev_mode_needs_no_secret() -> None:
    result = plan({"CHAT_AUTH": "dev"})
    assert (result.gateway.auth, result.generated_secret) == ("dev", False)
    assert "CHAT_JWT_SECRET" not in result.gateways[0].env


@pytest.mark.parametrize(
    ("environ", "service", "variable"),
    [
        ({"CHAT_JWT_SECRET": "short"}, "gateway", "CHAT_JWT_SECRET"),
        ({"CHAT_AUTH": "open"}, "gateway", "CHAT_AUTH"),
        ({"CHAT_PRESENCE_TTL_S": "0"}, "rooms", "CHAT_PRESENCE_TTL_S"),
        ({"CHAT_ANNOUNCE_INTERVAL_S": "0"}, "announcer", "CHAT_ANNOUNCE_INTERVAL_S"),
    ],
    ids=["short-secret", "bad-auth", "rooms", "announcer"],
)
def test_bad_settings_are_refused_before_anything_starts(
    environ: dict[str, str], service: str, variable: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        plan(environ)
    assert f"invalid configuration for {service}" in str(refused.value)
    assert variable in str(refused.value)
    assert "short" not in str(refused.value).replace("short-", "")
