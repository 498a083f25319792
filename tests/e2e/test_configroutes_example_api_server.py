"""The operator chart's worked configRoutes example (ci/configroutes-values.yaml) is accepted by the real API
server's CRD (structural schema and CEL rules), and a broken copy of it is refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.controlplane.plane import ControlPlane

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "config-refresh-operator"


def rendered_routes(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    out = plane.helm(
        "template", "rel", str(CHART), "--namespace", namespace,
        "--values", str(CHART / "ci" / "configroutes-values.yaml"),
        "--show-only", "templates/operator-configroutes.yaml",
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_the_worked_example_is_created_and_a_broken_copy_refused(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    [route] = rendered_routes(control_plane, kube_namespace)
    control_plane.kubectl("apply", "-n", kube_namespace, "-f", "-", input=json.dumps(route))
    stored = json.loads(
        control_plane.kubectl("get", "configroute", "orders", "-n", kube_namespace, "-o", "json").stdout
    )
    assert stored["spec"]["discovery"]["cloudMap"]["queryParameters"] == {"tenant": "{tenant}"}
    assert stored["spec"]["podSync"]["attributesFromLabels"] == ["tenant"]

    broken = copy.deepcopy(route)
    broken["metadata"]["name"] = "orders-broken"
    broken["spec"]["discovery"]["cloudMap"]["queryParameters"] = {"": "{tenant}"}  # the CRD's CEL rule
    refused = control_plane.kubectl(
        "apply", "-n", kube_namespace, "-f", "-", input=json.dumps(broken), check=False
    )
    assert refused.returncode != 0
    assert "queryParameters keys must not be empty" in refused.stderr
