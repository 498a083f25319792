"""The charts' `helm test` hooks: what they render, and that their scripts pass against a serving endpoint
and fail against one that is not (run here with the project's Python, as the image runs them)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, Info, start_http_server

from devstack.controlplane.build import binaries

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
OPERATOR_CHART = ROOT / "charts" / "config-refresh-operator"
SERVICE_CHART = ROOT / "charts" / "config-service"


def render(chart: Path, *args: str) -> list[dict[str, Any]]:
    helm = binaries().helm
    if not helm.is_file():
        pytest.fail(f"helm is not built at {helm}: run `make controlplane`", pytrace=False)
    values = chart / "ci" / "default-values.yaml"
    argv = [str(helm), "template", "rel", str(chart), "--namespace", "ns", "--values", str(values), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def hooks(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in manifests if (m["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]


def run_script(pod: dict[str, Any], target: str) -> subprocess.CompletedProcess[str]:
    [main] = pod["spec"]["containers"]
    assert main["command"] == ["python", "-c"]
    script, _rendered_target = main["args"]
    return subprocess.run(
        [sys.executable, "-c", script, target], capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


def test_config_service_test_checks_grpc_health_through_a_service_of_its_own() -> None:
    manifests = render(SERVICE_CHART)
    service, pod = sorted(hooks(manifests), key=lambda m: str(m["kind"]) != "Service")
    assert (service["kind"], pod["kind"]) == ("Service", "Pod")
    assert int(service["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        pod["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    [deployment] = [m for m in manifests if m["kind"] == "Deployment"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "grpc-health", "port": 50053, "targetPort": "health", "protocol": "TCP"}
    ]
    assert pod["spec"]["containers"][0]["args"][1] == "rel-config-service-test-health.ns.svc:50053"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_health_script_passes_on_serving_only(health_server: tuple[str, health.HealthServicer]) -> None:
    target, servicer = health_server
    pod = next(m for m in hooks(render(SERVICE_CHART)) if m["kind"] == "Pod")
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    passed = run_script(pod, target)
    assert passed.returncode == 0, passed.stderr
    assert f"{target}: SERVING" in passed.stdout


def test_the_health_script_keeps_trying_while_not_serving(
    health_server: tuple[str, health.HealthServicer],
) -> None:
    target, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    pod = next(m for m in hooks(render(SERVICE_CHART)) if m["kind"] == "Pod")
    [main] = pod["spec"]["containers"]
    with subprocess.Popen(
        [sys.executable, "-c", main["args"][0], target], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == f"{target}: NOT_SERVING"
            servicer.set("", health_pb2.HealthCheckResponse.SERVING)  # the bootstrap finished
            assert process.wait(timeout=60) == 0
        finally:
            process.kill()


def test_operator_test_reads_build_info_from_the_metrics_service() -> None:
    [pod] = hooks(render(OPERATOR_CHART))
    assert pod["spec"]["containers"][0]["args"][1] == (
        "http://rel-config-refresh-operator-metrics.ns.svc:9090/metrics"
    )
    assert not hooks(render(OPERATOR_CHART, "--set", "metrics.service.enabled=false"))


def test_the_metrics_script_passes_when_build_info_is_served() -> None:
    registry = CollectorRegistry()
    Info("config_refresh_build", "test", registry=registry).info({"version": "0.1.0", "python": "3.11"})
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        [pod] = hooks(render(OPERATOR_CHART))
        passed = run_script(pod, f"http://127.0.0.1:{server.server_port}/metrics")
        assert passed.returncode == 0, passed.stderr
        assert 'config_refresh_build_info{python="3.11",version="0.1.0"}' in passed.stdout
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("chart", [OPERATOR_CHART, SERVICE_CHART], ids=lambda p: p.name)
def test_helm_show_readme_prints_the_charts_readme(chart: Path) -> None:
    shown = subprocess.run(
        [str(binaries().helm), "show", "readme", str(chart)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout.strip() == (chart / "README.md").read_text().strip()
    assert shown.stdout.startswith(f"# {chart.name}\n")
    assert "helm test" in shown.stdout
