"""Sidecar injection with two operator replicas (kopf peering), as the chart runs `replicaCount: 2` (#21).

Both replicas serve the webhook over HTTPS with the one shared certificate (the chart mounts one Secret into
every replica; here the control plane's serving certificate, whose CA is the caBundle), and the webhook
Service sends an admission request to either. The standby is paused by peering (its kopf watches and
indexes stop), so the routes it answers from must come from the webhook's own list and watch: the test
creates a ConfigRoute only after the standby is paused, and deletes one, then sends the API server's
admission requests to the standby alone (a MutatingWebhookConfiguration by URL, since there is no cluster
network here), then kills the active replica and creates pods again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.stack.kube import get_json, route_object, wait_for, wait_route_ready
from devstack.stack.operator import OperatorProcess, free_port
from tests.e2e.test_injection_webhook import (
    LABEL,
    chart_sidecar_template,
    pod_manifest,
    webhook_configuration,
)
from tests.e2e.test_operator_ha import _peering_ready

PEERING = "config-refresh-ha"
ACTIVE_PRIORITY = 200
STANDBY_PRIORITY = 100


def _peers(control_plane: ControlPlane, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = (
        get_json(control_plane, "kopfpeering", PEERING, "-n", namespace).get("status") or {}
    )
    return status


def _route(local_aws: LocalAws, name: str) -> dict[str, Any]:
    route = route_object(name, local_aws=local_aws, prefix=local_aws.prefix, payload="invalidate")
    route["spec"]["podSync"] = {"selector": {"matchLabels": {"app": "orders"}}, "port": 50051}
    return route


def _replica(
    operator_process: Callable[..., OperatorProcess],
    template: Path,
    control_plane: ControlPlane,
    priority: int,
) -> OperatorProcess:
    return operator_process(
        peering=(PEERING, priority),
        CONFIG_REFRESH_METRICS_PORT=str(free_port()),
        CONFIG_REFRESH_INJECTION_ENABLED="true",
        CONFIG_REFRESH_INJECTION_ADDRESS="127.0.0.1",
        CONFIG_REFRESH_INJECTION_PORT=str(free_port()),
        CONFIG_REFRESH_INJECTION_CERT_FILE=str(control_plane.pki.serving_cert),
        CONFIG_REFRESH_INJECTION_KEY_FILE=str(control_plane.pki.serving_key),
        CONFIG_REFRESH_INJECTION_TEMPLATE_FILE=str(template),
    )


@pytest.mark.timeout(600)
def test_every_replica_injects_from_current_routes_and_the_standby_serves_when_the_active_is_gone(
    control_plane: ControlPlane,
    kube_namespace: str,
    local_aws: LocalAws,
    operator_process: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    _peering_ready(control_plane, kube_namespace)
    template = tmp_path / "sidecar.json"
    template.write_text(chart_sidecar_template(control_plane, local_aws))
    control_plane.kubectl(
        "apply", "-n", kube_namespace, "-f", "-", input=json.dumps(_route(local_aws, "orders"))
    )
    control_plane.kubectl(
        "apply", "-n", kube_namespace, "-f", "-", input=json.dumps(_route(local_aws, "gone"))
    )
    active = _replica(operator_process, template, control_plane, ACTIVE_PRIORITY)
    standby = _replica(operator_process, template, control_plane, STANDBY_PRIORITY)
    wait_for(lambda: len(_peers(control_plane, kube_namespace)) == 2, what="both replicas in the KopfPeering")
    # Changed while the standby is paused: its kopf watches see neither.
    control_plane.kubectl(
        "apply", "-n", kube_namespace, "-f", "-", input=json.dumps(_route(local_aws, "late"))
    )
    control_plane.kubectl("delete", "configroute", "gone", "-n", kube_namespace)
    wait_route_ready(control_plane, kube_namespace, "late")  # the active replica's handler has it
    assert "Handler 'route' succeeded" in active.log_text()
    assert "Handler 'route' succeeded" not in standby.log_text(), "the standby's kopf handlers are paused"

    name = f"config-refresh-inject-{kube_namespace}"
    labels = {"app": "orders", LABEL: "enabled"}

    def send_to(replica: OperatorProcess) -> None:
        url = f"https://127.0.0.1:{replica.env['CONFIG_REFRESH_INJECTION_PORT']}/inject"
        configuration = webhook_configuration(name, kube_namespace, url, control_plane.pki.ca_cert, "Fail")
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(configuration))

    def injected_by(replica: OperatorProcess, route: str) -> dict[str, Any]:
        """A pod asking for `route`, created until the API server has sent it to `replica` (a changed
        webhook configuration takes effect asynchronously) and it came back with the sidecar."""

        def attempt() -> dict[str, Any] | None:
            pod_name = f"{route}-{time.monotonic_ns()}"
            asks = {LABEL: route, "configrefresh.io/prefixes": local_aws.prefix}
            manifest = pod_manifest(pod_name, labels=labels, annotations=asks)
            result = control_plane.kubectl(
                "create",
                "-n",
                kube_namespace,
                "-f",
                "-",
                "-o",
                "json",
                check=False,
                input=json.dumps(manifest),
            )
            if result.returncode != 0 or f"/{pod_name} " not in replica.log_text():
                return None
            created: dict[str, Any] = json.loads(result.stdout)
            return created

        pod: dict[str, Any] = wait_for(
            attempt,
            timeout=60,
            interval=0.5,
            what=f"a pod asking for {route} injected by the replica {replica.peering}",
        )
        return pod

    def refused_by(replica: OperatorProcess, route: str) -> str:
        before = replica.log_text().count("refused injection")

        def attempt() -> str | None:
            asks = {LABEL: route, "configrefresh.io/prefixes": local_aws.prefix}
            manifest = pod_manifest(f"{route}-{time.monotonic_ns()}", labels=labels, annotations=asks)
            result = control_plane.kubectl(
                "create", "-n", kube_namespace, "-f", "-", check=False, input=json.dumps(manifest)
            )
            if result.returncode == 0 or replica.log_text().count("refused injection") == before:
                return None
            return result.stderr

        message: str = wait_for(
            attempt,
            timeout=60,
            interval=0.5,
            what=f"a pod asking for {route} refused by the replica {replica.peering}",
        )
        return message

    # The active replica answers with the sidecar.
    send_to(active)
    pod = injected_by(active, "orders")
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["config-service"]

    # The standby answers too, from routes that are current although its kopf watches are paused: the
    # route created while it was paused is served, the one deleted meanwhile is refused.
    send_to(standby)
    for route in ("orders", "late"):
        pod = injected_by(standby, route)
        assert pod["metadata"]["annotations"]["configrefresh.io/injected"] == route
        assert pod["spec"]["initContainers"][0]["image"] == "registry.example/config-service:test"
    assert "ConfigRoute gone not found" in refused_by(standby, "gone")
    assert "Handler 'route' succeeded" not in standby.log_text(), "the standby was paused throughout"

    # The active replica is gone: the standby, still paused until the peering entry expires, injects.
    active.kill()
    pod = injected_by(standby, "late")
    assert pod["spec"]["initContainers"][0]["name"] == "config-service"
