"""The supported CRD upgrade path on a real kube-apiserver: the config-refresh-crds chart.

Helm installs a chart's crds/ directory once and never upgrades it, so the operator chart alone leaves a
changed CRD behind on `helm upgrade`. config-refresh-crds renders the same CRDs as templates: these tests
install it, `helm upgrade` it with a changed CRD and read the change back from the API server, check that
objects survive and that uninstall keeps the CRDs, and walk the adoption of CRDs that an earlier operator
chart installed. Each test has a cluster of its own: CRDs are cluster-wide, and the shared test cluster has
them applied already.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from devstack.controlplane.plane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
CRDS_CHART = ROOT / "charts" / "config-refresh-crds"
OPERATOR_CHART = ROOT / "charts" / "config-refresh-operator"
NAMESPACE = "config-refresh"
RELEASE = "config-refresh-crds"
CRD_NAMES = [
    "configrefreshes.configrefresh.io",
    "configroutes.configrefresh.io",
    "clusterkopfpeerings.kopf.dev",
    "kopfpeerings.kopf.dev",
]
OPERATOR_SETS = [
    "--set",
    "aws.queueUrl=https://sqs.us-east-1.amazonaws.com/123456789012/config-refresh-events",
    "--set",
    "image.repository=registry.example/config-refresh-operator",
    "--set",
    "replicaCount=2",
]


def _get(plane: ControlPlane, *args: str) -> Any:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


def _printer_columns(plane: ControlPlane) -> list[str]:
    crd = _get(plane, "crd", "configroutes.configrefresh.io")
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return [column["name"] for column in version.get("additionalPrinterColumns", [])]


def _changed_chart(tmp_path: Path) -> Path:
    """A copy of the chart (links resolved, as `helm package` stores it) at 0.1.1 whose ConfigRoute CRD
    has one more printer column: what a release that changes a CRD ships."""
    chart = tmp_path / "config-refresh-crds"
    shutil.copytree(CRDS_CHART, chart, symlinks=False)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = "0.1.1"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    path = chart / "files" / "crds" / "configrefresh.io_configroutes.yaml"
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    version.setdefault("additionalPrinterColumns", []).append(
        {"name": "Upgraded", "type": "string", "jsonPath": ".spec.parameterPrefix", "priority": 1}
    )
    path.write_text(yaml.safe_dump(crd))
    return chart


def _create_route(plane: ControlPlane) -> None:
    sample = (ROOT / "crds" / "samples" / "configrefresh.io_v1alpha1_configroute.yaml").read_text()
    plane.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=sample)


def _route_names(plane: ControlPlane) -> list[str]:
    items = _get(plane, "configroutes", "-n", NAMESPACE)["items"]
    return [item["metadata"]["name"] for item in items]


def test_helm_upgrade_of_the_crds_chart_changes_the_crd_and_uninstall_keeps_it(tmp_path: Path) -> None:
    with ControlPlane.start() as plane:
        plane.create_namespace(NAMESPACE)
        plane.helm("install", RELEASE, str(CRDS_CHART), "-n", NAMESPACE, "--wait")
        plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in CRD_NAMES)
        )
        for name in CRD_NAMES:
            metadata = _get(plane, "crd", name)["metadata"]
            assert metadata["annotations"]["helm.sh/resource-policy"] == "keep", name
            assert metadata["annotations"]["meta.helm.sh/release-name"] == RELEASE, name
        assert "Upgraded" not in _printer_columns(plane)
        # The operator chart on top, without its own copy of the CRDs: its KopfPeering needs them.
        plane.helm(
            "install",
            "config-refresh-operator",
            str(OPERATOR_CHART),
            "-n",
            NAMESPACE,
            "--skip-crds",
            *OPERATOR_SETS,
        )
        assert _get(plane, "kopfpeering", "config-refresh-operator", "-n", NAMESPACE)["kind"] == "KopfPeering"
        _create_route(plane)
        routes = _route_names(plane)
        assert routes

        plane.helm("upgrade", RELEASE, str(_changed_chart(tmp_path)), "-n", NAMESPACE, "--wait")
        assert "Upgraded" in _printer_columns(plane), "helm upgrade applied the changed CRD"
        wide = plane.kubectl("get", "configroutes", "-n", NAMESPACE, "-o", "wide").stdout
        assert "UPGRADED" in wide.splitlines()[0], "kubectl shows the new column"
        assert _route_names(plane) == routes, "objects survive the CRD upgrade"

        plane.helm("uninstall", RELEASE, "-n", NAMESPACE)
        for name in CRD_NAMES:
            assert _get(plane, "crd", name)["metadata"]["name"] == name, f"{name} was kept"
        assert _route_names(plane) == routes, "uninstall keeps every ConfigRoute"


def test_crds_an_earlier_operator_chart_installed_are_adopted_with_the_documented_commands(
    tmp_path: Path,
) -> None:
    with ControlPlane.start() as plane:
        plane.create_namespace(NAMESPACE)
        plane.helm("install", "config-refresh-operator", str(OPERATOR_CHART), "-n", NAMESPACE, *OPERATOR_SETS)
        _create_route(plane)
        routes = _route_names(plane)

        refused = plane.helm("install", RELEASE, str(CRDS_CHART), "-n", NAMESPACE, check=False)
        assert refused.returncode != 0
        assert "invalid ownership metadata" in refused.stderr, refused.stderr

        # docs/install-eks.md, "Upgrading the CRDs": hand the existing CRDs to the release.
        for name in CRD_NAMES:
            plane.kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
            plane.kubectl(
                "annotate",
                "--overwrite",
                "crd",
                name,
                f"meta.helm.sh/release-name={RELEASE}",
                f"meta.helm.sh/release-namespace={NAMESPACE}",
            )
        plane.helm("install", RELEASE, str(CRDS_CHART), "-n", NAMESPACE, "--wait")
        plane.helm("upgrade", RELEASE, str(_changed_chart(tmp_path)), "-n", NAMESPACE, "--wait")
        assert "Upgraded" in _printer_columns(plane)
        assert _route_names(plane) == routes
        # The operator chart's next upgrade leaves the adopted CRDs alone (Helm never touches crds/ again).
        plane.helm("upgrade", "config-refresh-operator", str(OPERATOR_CHART), "-n", NAMESPACE, *OPERATOR_SETS)
        assert "Upgraded" in _printer_columns(plane)
