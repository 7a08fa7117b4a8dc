"""Dashboards and alerts: deploy/prometheus/alerts.yml, k8s/monitoring/, deploy/grafana/.

The alert rules are checked and unit-tested by ``promtool`` (Debian's ``prometheus``
package, or ``$CHAT_PROMTOOL``); without it those tests skip, unless
``CHAT_REQUIRE_PROMTOOL=1`` (as in CI), where they fail. Everything else needs no
binary: every metric the rules and the dashboard query is one the services export,
every panel has a data source and a query, the PrometheusRule holds exactly the plain
file's groups, and compose provisions Grafana and loads the rules.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import pytest
import yaml

from ..docs.test_readme import exposed_metric_names
from .test_manifests import SERVICES, Doc, _compose, _of_kind, _render

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/alerts.yml"
RULE_TESTS = Path(__file__).parent / "prometheus/alerts.test.yml"
PROMETHEUS_RULE = ROOT / "k8s/monitoring/prometheusrule.yaml"
GENERATOR = ROOT / "deploy/prometheus/prometheusrule.py"
DASHBOARDS = ROOT / "deploy/grafana/dashboards"
PROVISIONING = ROOT / "deploy/grafana/provisioning"
DEFAULT_PROMTOOL = "/usr/bin/promtool"
#: Series Prometheus itself writes for every target.
PROMETHEUS_SERIES = {"up"}
#: Metrics the dashboard may chart, in a panel marked "pending metric", before a
#: service exports them (none today).
PENDING: set[str] = set()
SEVERITIES = {"critical", "warning", "info"}


# ---------------------------------------------------------------------- promtool --


@pytest.fixture
def promtool() -> str:
    """The promtool binary, or a skip (a failure with CHAT_REQUIRE_PROMTOOL=1)."""
    path = os.environ.get("CHAT_PROMTOOL") or shutil.which("promtool") or DEFAULT_PROMTOOL
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        reason = (
            f"no promtool at {path} (install Debian's 'prometheus' package, "
            "or point CHAT_PROMTOOL at a promtool binary)"
        )
        if os.environ.get("CHAT_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"{reason}; CHAT_REQUIRE_PROMTOOL=1 forbids skipping", pytrace=False)
        pytest.skip(reason)
    return path


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = _run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_compose_prometheus_config_and_its_rules(promtool: str) -> None:
    result = _run(promtool, "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_the_alert_unit_tests_pass(promtool: str) -> None:
    result = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_see_alerts_fire_and_stay_silent() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert [(ROOT / RULE_TESTS.parent / f).resolve() for f in tests["rule_files"]] == [RULES]
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert len(firing & silent) >= 2, "at least two alerts must be seen both firing and not"
    assert firing | silent <= set(_alerts())


# --------------------------------------------------------------------- the rules --


@cache
def _rules() -> Doc:
    doc: Doc = yaml.safe_load(RULES.read_text())
    return doc


def _alerts() -> dict[str, Doc]:
    return {rule["alert"]: rule for group in _rules()["groups"] for rule in group["rules"]}


def test_every_alert_has_a_delay_a_severity_and_what_an_operator_needs() -> None:
    rules = [rule for group in _rules()["groups"] for rule in group["rules"]]
    names = [rule.get("alert") for rule in rules]
    assert None not in names, "only alerting rules here"
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no `for:`"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), name
        assert all(annotations[key].strip() for key in ("summary", "description", "runbook"))


def _label_values(label: str) -> dict[str, set[str]]:
    """Alert name -> the values its expression matches ``label`` against (= or =~)."""
    found: dict[str, set[str]] = {}
    for name, rule in _alerts().items():
        for value in re.findall(rf'\b{label}=~?"([^"]*)"', rule["expr"]):
            found.setdefault(name, set()).update(value.split("|"))
    return found


def test_label_values_in_the_rules_are_ones_the_services_use() -> None:
    from chat_announcements.worker import SkipReason
    from chat_protocol.messages import ErrorCode

    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if "chat_gateway_handshakes_rejected" in line)
    handshake_reasons = set(re.findall(r"`([a-z_]+)`", row.split("|")[3]))
    reasons = _label_values("reason")
    rejected = reasons.pop("ChatHandshakesRejectedSpiking")
    refused = reasons.pop("ChatHandshakesRefusedByGateway")
    assert not rejected & refused
    assert rejected | refused == handshake_reasons, (
        "every refusal reason, in one alert or the other"
    )
    assert set().union(*reasons.values()) <= set(get_args(SkipReason))
    codes = {v for k, v in vars(ErrorCode).items() if k.isupper()}
    assert set().union(*_label_values("code").values()) <= codes


# ----------------------------------------------------------- metric names in PromQL --

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub("", text)
    names = set()
    for name, call in _IDENTIFIER.findall(text):
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'sum by (job, le) (rate(chat_a_total{code="x", job=~"$job"}[$__rate_interval]))'
        ' / on (job) group_left max(up{job="chat-rooms"} == 1) and chat_b offset 5m'
    )
    assert metric_names(expr) == {"chat_a_total", "up", "chat_b"}


def _unknown(names: set[str], allowed: set[str]) -> set[str]:
    """Names neither exported nor a histogram's ``_bucket``/``_sum``/``_count`` series."""
    known = allowed | PROMETHEUS_SERIES
    return {
        name
        for name in names
        if name not in known and re.sub(r"_(bucket|sum|count)$", "", name) not in known
    }


def test_every_metric_an_alert_uses_is_exported() -> None:
    exported = exposed_metric_names()
    for name, rule in _alerts().items():
        used = metric_names(rule["expr"])
        assert used, f"{name}: no metric in {rule['expr']!r}"
        assert not _unknown(used, exported), f"{name}: not exported: {_unknown(used, exported)}"


# -------------------------------------------------------------------- dashboards --


def _dashboards() -> list[Path]:
    paths = sorted(DASHBOARDS.glob("*.json"))
    assert paths, f"no dashboard in {DASHBOARDS}"
    return paths


def _panels(panels: list[Doc]) -> Iterator[Doc]:
    """Every panel, rows' own panels included (a collapsed row nests them)."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


@pytest.fixture(params=[p.name for p in DASHBOARDS.glob("*.json")])
def dashboard(request: pytest.FixtureRequest) -> Doc:
    doc: Doc = json.loads((DASHBOARDS / request.param).read_text())
    return doc


def test_there_is_a_dashboard() -> None:
    assert [p.name for p in _dashboards()] == ["chat.json"]


def test_every_panel_has_a_data_source_and_a_query(dashboard: Doc) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    source = variables["DS_PROMETHEUS"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    assert dashboard["uid"] and dashboard["title"]
    ids = []
    for panel in _panels(dashboard["panels"]):
        ids.append(panel["id"])
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_metric_the_dashboard_queries_is_exported(dashboard: Doc) -> None:
    exported = exposed_metric_names()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # Grafana's label_values(<series selector>, <label>).
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert match, variable["definition"]
            assert not _unknown(metric_names(match.group(1)), exported), variable["name"]
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            used = metric_names(target["expr"])
            assert used, f"{panel['title']}: no metric in {target['expr']!r}"
            unknown = _unknown(used, exported)
            if unknown and not _unknown(used, exported | PENDING):
                # Charted ahead of the change that exports it: said so on the panel.
                assert "pending metric" in panel["title"], panel["title"]
            else:
                assert not unknown, f"{panel['title']}: not exported: {unknown}"


def test_the_dashboard_covers_what_operators_watch(dashboard: Doc) -> None:
    exprs = " ".join(t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", []))
    for metric in [
        "up",
        "chat_gateway_connections",
        "chat_rooms_arrivals_announced_total",
        "chat_rooms_departures_announced_total",
        "chat_gateway_frames_delivered_total",
        "chat_gateway_delivery_latency_seconds_bucket",
        "chat_gateway_slow_consumer_disconnects_total",
        "chat_gateway_messages_rate_limited_total",
        "chat_gateway_nats_connected",
        "chat_gateway_nats_reconnects_total",
        "chat_gateway_messages_stored_total",
        "chat_rooms_members_lost_total",
    ]:
        assert re.search(rf"\b{metric}\b", exprs), metric
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert any("chat_gateway_delivery_latency_seconds" in title for title in rows)


# ------------------------------------------------------------- PrometheusRule (k8s) --


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prometheusrule", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prometheus_rule_is_generated_from_the_rules_file() -> None:
    expected = _generator().render(RULES.read_text())
    assert PROMETHEUS_RULE.read_text() == expected, (
        "k8s/monitoring/prometheusrule.yaml is out of date: regenerate it with "
        "`.venv/bin/python deploy/prometheus/prometheusrule.py`"
    )


def test_the_prometheus_rule_holds_exactly_the_rules_file_groups() -> None:
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == _rules()["groups"]


def test_the_monitoring_kustomization_renders_the_rules_and_a_pod_monitor() -> None:
    docs = _render("k8s/monitoring")
    assert sorted(d["kind"] for d in docs) == ["PodMonitor", "PrometheusRule"]
    assert all(d["metadata"]["namespace"] == "chat" for d in docs)
    (rule,) = _of_kind(docs, "PrometheusRule").values()
    assert rule["spec"]["groups"] == _rules()["groups"]
    (monitor,) = _of_kind(docs, "PodMonitor").values()
    spec = monitor["spec"]
    # `job` is the pod's name label, as in compose: the rules select jobs by it.
    assert spec["jobLabel"] == "app.kubernetes.io/name"
    (expression,) = spec["selector"]["matchExpressions"]
    assert expression["key"] == "app.kubernetes.io/name"
    assert set(expression["values"]) == set(SERVICES)
    base = _render("k8s/base")
    port_names = set()
    for workload in _of_kind(base, "Deployment").values():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/name") in SERVICES:
            annotations = workload["spec"]["template"]["metadata"]["annotations"]
            for container in workload["spec"]["template"]["spec"]["containers"]:
                for port in container["ports"]:
                    if str(port["containerPort"]) == annotations["prometheus.io/port"]:
                        port_names.add(port["name"])
    endpoints = spec["podMetricsEndpoints"]
    assert {e["port"] for e in endpoints} == port_names
    assert {e["path"] for e in endpoints} == {"/metrics"}


def test_job_names_in_the_rules_are_the_compose_scrape_jobs() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(SERVICES)
    text = RULES.read_text()
    assert set(re.findall(r"\bchat-[a-z]+\b", text)) <= jobs


# ----------------------------------------------------------------------- compose --


def _mounts(service: Doc) -> dict[str, tuple[str, list[str]]]:
    """Container path -> (host path, options) of a compose service's bind mounts."""
    mounts = {}
    for volume in service["volumes"]:
        host, container, *options = volume.split(":")
        mounts[container] = (host, options)
    return mounts


def test_compose_prometheus_loads_the_alert_rules() -> None:
    prometheus = _compose()["services"]["prometheus"]
    mounts = _mounts(prometheus)
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config_dir = Path("/etc/prometheus")
    assert mounts[str(config_dir / "prometheus.yml")] == (
        "./deploy/prometheus/prometheus.yml",
        ["ro"],
    )
    for rule_file in config["rule_files"]:
        host, options = mounts[str(config_dir / rule_file)]
        assert (ROOT / host).resolve() == RULES and options == ["ro"]


def test_compose_provisions_grafana_read_only_with_the_dashboard() -> None:
    services = _compose()["services"]
    grafana = services["grafana"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"]), "pin a version"
    assert grafana["profiles"] == services["prometheus"]["profiles"] == ["monitoring"]
    assert grafana["restart"] == "unless-stopped"
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:-")
    assert grafana["ports"] == ["127.0.0.1:3000:3000"], "loopback only"
    mounts = _mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == ("./deploy/grafana/provisioning", ["ro"])
    dashboards_dir = next(c for c, (h, _) in mounts.items() if h == "./deploy/grafana/dashboards")
    assert mounts[dashboards_dir][1] == ["ro"]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_dir}/chat.json"

    (provider,) = yaml.safe_load((PROVISIONING / "dashboards/chat.yml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == dashboards_dir
    assert provider["allowUiUpdates"] is False

    (source,) = yaml.safe_load((PROVISIONING / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    published = services["prometheus"]["ports"][0].split(":")[-1]
    assert source["url"] == f"http://prometheus:{published}"
    dashboard: dict[str, Any] = json.loads((DASHBOARDS / "chat.json").read_text())
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS")
    assert variable["current"]["value"] == source["uid"]
