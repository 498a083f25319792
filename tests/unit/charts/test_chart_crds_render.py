"""What `helm template` makes of config-refresh-crds: the CRDs of crds/ verbatim, plus ownership and keep."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.controlplane.build import binaries

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "config-refresh-crds"
KOPF_FILE = ROOT / "charts" / "config-refresh-operator" / "crds" / "kopf.dev_peerings.yaml"


def _render(*sets: str) -> list[dict[str, Any]]:
    helm = binaries().helm
    if not helm.exists():
        pytest.fail(f"helm is not built at {helm}: run `make controlplane`", pytrace=False)
    argv = [str(helm), "template", "config-refresh-crds", str(CHART)]
    for value in sets:
        argv += ["--set", value]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _sources() -> dict[str, dict[str, Any]]:
    documents = [
        yaml.safe_load((ROOT / "crds" / p.name).read_text()) for p in sorted((ROOT / "crds").glob("*.yaml"))
    ]
    documents += [doc for doc in yaml.safe_load_all(KOPF_FILE.read_text()) if doc]
    return {doc["metadata"]["name"]: doc for doc in documents}


def _without_ownership(doc: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in doc["metadata"].items() if k not in {"labels", "annotations"}}
    return {**doc, "metadata": metadata}


def test_every_crd_renders_as_it_is_in_crds_and_is_kept_on_uninstall() -> None:
    rendered = {doc["metadata"]["name"]: doc for doc in _render()}
    sources = _sources()
    assert (
        set(rendered)
        == set(sources)
        == {
            "configrefreshes.configrefresh.io",
            "configroutes.configrefresh.io",
            "clusterkopfpeerings.kopf.dev",
            "kopfpeerings.kopf.dev",
        }
    )
    for name, doc in rendered.items():
        assert doc["kind"] == "CustomResourceDefinition"
        # The schema, names and versions are those of crds/: the chart adds metadata and nothing else.
        assert _without_ownership(doc) == _without_ownership(sources[name]), name
        assert doc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", name
        assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm", name
        assert doc["metadata"]["labels"]["helm.sh/chart"] == "config-refresh-crds-0.1.0", name


def test_keep_and_the_kopf_peering_crds_can_be_turned_off() -> None:
    rendered = {doc["metadata"]["name"]: doc for doc in _render("crds.keep=false", "crds.kopfPeering=false")}
    assert set(rendered) == {"configrefreshes.configrefresh.io", "configroutes.configrefresh.io"}
    for name, doc in rendered.items():
        assert "helm.sh/resource-policy" not in (doc["metadata"].get("annotations") or {}), name


def test_an_unknown_value_is_refused_by_the_schema() -> None:
    helm = binaries().helm
    result = subprocess.run(
        [str(helm), "template", "x", str(CHART), "--set", "crds.instal=false"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "instal" in result.stderr
