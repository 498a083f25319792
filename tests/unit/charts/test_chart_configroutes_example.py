"""The worked configRoutes example (the operator chart's ci/configroutes-values.yaml, quoted in values.yaml
and docs/install-eks.md) renders ConfigRoutes that the CRD's schema accepts, and values.yaml quotes it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from devstack.controlplane.build import binaries

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "config-refresh-operator"
EXAMPLE = CHART / "ci" / "configroutes-values.yaml"


def rendered_routes() -> list[dict[str, Any]]:
    helm = binaries().helm
    if not helm.is_file():
        pytest.fail(f"helm is not built at {helm}: run `make controlplane`", pytrace=False)
    argv = [
        str(helm),
        "template",
        "rel",
        str(CHART),
        "--namespace",
        "config-refresh",
        "--values",
        str(EXAMPLE),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "ConfigRoute"]


def test_the_example_routes_pass_the_crd_schema() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "configrefresh.io_configroutes.yaml").read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = version["schema"]["openAPIV3Schema"]
    routes = rendered_routes()
    assert [r["metadata"]["name"] for r in routes] == ["orders"]
    for route in routes:
        jsonschema.validate(route, schema)
        assert route["metadata"]["namespace"] == "config-refresh"
        assert route["spec"]["podSync"]["attributesFromLabels"] == ["tenant"]


def test_values_yaml_quotes_the_example() -> None:
    """The commented example in values.yaml is the ci file's route, field for field."""
    values = (CHART / "values.yaml").read_text()
    block = values[
        values.index("# -- ConfigRoutes created with the release") : values.index("configRoutes: []")
    ]
    quoted = "\n".join(line[3:] for line in block.splitlines() if re.match(r"^#   ", line))
    [example] = yaml.safe_load(EXAMPLE.read_text())["configRoutes"]
    [in_values] = yaml.safe_load(quoted)
    # values.yaml leaves out maxConcurrency (its default) to stay short; everything else is the same.
    expected = yaml.safe_load(yaml.safe_dump(example))
    del expected["spec"]["refresh"]["maxConcurrency"]
    assert in_values == expected
