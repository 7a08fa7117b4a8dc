"""Write k8s/monitoring/prometheusrule.yaml from deploy/prometheus/alerts.yml.

The plain rules file is the one source of the chat's alerts: compose's Prometheus
loads it as it is, and the Prometheus Operator gets the same groups wrapped in a
``PrometheusRule``. Run after editing the rules::

    .venv/bin/python deploy/prometheus/prometheusrule.py

``tests/deploy/test_monitoring.py`` fails while the committed copy differs from what
this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
OUTPUT = ROOT / "k8s" / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# The chat's alert rules for the Prometheus Operator. GENERATED from
# deploy/prometheus/alerts.yml by deploy/prometheus/prometheusrule.py: edit the rules
# there and regenerate, never here (tests/deploy/test_monitoring.py checks the two agree).
"""


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    """The ``PrometheusRule`` holding ``rules``' groups (a parsed rules file)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "chat",
            "labels": {
                "app.kubernetes.io/name": "chat-alerts",
                "app.kubernetes.io/component": "monitoring",
            },
        },
        "spec": {"groups": rules["groups"]},
    }


def render(rules_text: str) -> str:
    """The ``PrometheusRule`` file's text for the rules file text ``rules_text``."""
    document = prometheus_rule(yaml.safe_load(rules_text))
    body: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


def main() -> int:
    OUTPUT.write_text(render(RULES.read_text(encoding="utf-8")), encoding="utf-8", newline="\n")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
