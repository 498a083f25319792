"""What the charts render for a monitoring stack: the ServiceMonitors, the PrometheusRule (its alerts are
unit-tested by promtool: tests/prometheus/rules-test.yaml), the Grafana dashboard and the JSON log format."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.controlplane.build import binaries

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
OPERATOR_CHART = ROOT / "charts" / "config-refresh-operator"
SERVICE_CHART = ROOT / "charts" / "config-service"
ALERTS = {
    "ConfigRefreshDeadLetterQueueNotEmpty",
    "ConfigRefreshRolloutFailed",
    "ConfigRefreshRolloutPartiallyFailed",
    "ConfigRefreshRolloutHalted",
    "ConfigRefreshEventsRecoveredByResync",
    "ConfigRefreshCircuitBreakersOpen",
    "ConfigRefreshCommitToAppliedSlow",
}
METRIC_MODULES = [
    ROOT / "operator" / "refresh_operator" / "metrics.py",
    ROOT / "operator" / "refresh_operator" / "fanout" / "metrics.py",
    ROOT / "config_service" / "metrics.py",
]


def render(chart: Path, *args: str) -> list[dict[str, Any]]:
    helm = binaries().helm
    if not helm.is_file():
        pytest.fail(f"helm is not built at {helm}: run `make controlplane`", pytrace=False)
    argv = [str(helm), "template", "rel", str(chart), "--namespace", "config-refresh", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return [m["kind"] for m in manifests]


def monitoring(chart: Path) -> list[dict[str, Any]]:
    return render(chart, "--values", str(chart / "ci" / "monitoring-values.yaml"))


def test_monitoring_is_off_by_default() -> None:
    operator = render(OPERATOR_CHART, "--values", str(OPERATOR_CHART / "ci" / "default-values.yaml"))
    service = render(SERVICE_CHART, "--values", str(SERVICE_CHART / "ci" / "default-values.yaml"))
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert kind not in kinds(operator) + kinds(service)
    assert not [m for m in operator if m["kind"] == "ConfigMap" and "dashboard" in m["metadata"]["name"]]
    args = next(m for m in operator if m["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert args["args"][args["args"].index("--log-format") + 1] == "text"


def test_config_service_servicemonitor_scrapes_the_metrics_port_of_its_service() -> None:
    manifests = monitoring(SERVICE_CHART)
    [monitor] = [m for m in manifests if m["kind"] == "ServiceMonitor"]
    [service] = [
        m
        for m in manifests
        if m["kind"] == "Service" and "helm.sh/hook" not in m["metadata"].get("annotations", {})
    ]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert "metrics" in [p["name"] for p in service["spec"]["ports"]]


def test_the_prometheusrule_has_every_alert_on_metrics_that_exist() -> None:
    manifests = monitoring(OPERATOR_CHART)
    [rule] = [m for m in manifests if m["kind"] == "PrometheusRule"]
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {a["alert"] for a in alerts} == ALERTS
    for alert in alerts:
        assert alert["labels"]["team"] == "platform"
        assert alert["labels"]["severity"] in {"warning", "critical"}
    exported = "\n".join(path.read_text() for path in METRIC_MODULES)
    for alert in alerts:
        for name in set(re.findall(r"config_(?:refresh|service)_[a-z_]+", alert["expr"])):
            base = name.removesuffix("_bucket")
            assert f'"{base}"' in exported, f"{alert['alert']} uses {name}, which no program exports"


def test_without_a_queue_name_the_dlq_alert_is_left_out() -> None:
    manifests = render(
        OPERATOR_CHART,
        "--values",
        str(OPERATOR_CHART / "ci" / "default-values.yaml"),
        "--set",
        "prometheusRule.enabled=true",
    )
    [rule] = [m for m in manifests if m["kind"] == "PrometheusRule"]
    names = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert names == ALERTS - {"ConfigRefreshDeadLetterQueueNotEmpty"}


def test_the_dashboard_configmap_holds_the_dashboard_json() -> None:
    manifests = monitoring(OPERATOR_CHART)
    [configmap] = [m for m in manifests if m["kind"] == "ConfigMap" and "dashboard" in m["metadata"]["name"]]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    dashboard = json.loads(configmap["data"]["config-refresh.json"])
    assert dashboard == json.loads((OPERATOR_CHART / "dashboards" / "config-refresh.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exported = "\n".join(path.read_text() for path in METRIC_MODULES)
    for expr in exprs:
        for name in set(re.findall(r"config_(?:refresh|service)_[a-z_]+", expr)):
            base = name.removesuffix("_bucket")
            if base.endswith("_build_info"):
                base = base.removesuffix("_info")
            assert f'"{base}"' in exported, f"the dashboard uses {name}, which no program exports"


def test_json_logs_are_picked_by_a_value() -> None:
    manifests = monitoring(OPERATOR_CHART)
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    main = deployment["spec"]["template"]["spec"]["containers"][0]
    assert main["args"][main["args"].index("--log-format") + 1] == "json"
