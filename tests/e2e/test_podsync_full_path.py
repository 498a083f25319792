"""The full path with no hand-registered instance (issue 6): pods → podSync → Cloud Map → fan-out.

Real config-service processes stand in for the pods' containers: pod i's status says podIP =
instance i's host, and every instance listens on the same refresh port (as a pod template's container
port does). Only podSync puts them in Cloud Map. A PutParameter then reaches every Ready pod, and the
not-Ready pod is never called. The operator runs as it ships, `config-refresh-operator` with podSync on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.stack.parts import port_free_on_every

WAIT = 90.0


def wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def kubectl_json(plane: ControlPlane, *args: str) -> Any:
    return json.loads(plane.kubectl(*args, "-o", "json").stdout)


def test_pods_synced_by_podsync_are_refreshed_and_a_not_ready_pod_is_not_called(
    control_plane: ControlPlane,
    local_aws: LocalAws,
    kube_namespace: str,
    service_fleet: Callable[..., Any],
    operator_process: Callable[..., Any],
) -> None:
    fleet = service_fleet(4, local_aws=local_aws, start=False)
    port = port_free_on_every([instance.host for instance in fleet])
    for instance in fleet:
        # Same container port on every "pod". ServiceFleet has no option for it yet (see the report).
        instance.refresh_port = port
        instance._env["CONFIG_SERVICE_REFRESH_PORT"] = str(port)
    fleet.start()
    fleet.wait_serving(120)

    route = {
        "apiVersion": "configrefresh.io/v1alpha1",
        "kind": "ConfigRoute",
        "metadata": {"name": "services"},
        "spec": {
            "parameterPrefix": local_aws.prefix,
            "discovery": {
                "cloudMap": {"namespace": local_aws.namespace_name, "service": local_aws.service_name}
            },
            "refresh": {"port": port, "timeoutSeconds": 2, "maxAttempts": 2, "deadlineSeconds": 30},
            "podSync": {"selector": {"matchLabels": {"app": "config-service"}}, "port": port},
        },
    }
    control_plane.kubectl("apply", "-n", kube_namespace, "-f", "-", input=json.dumps(route))
    operator_process(CONFIG_REFRESH_POD_SYNC="true")

    for index, instance in enumerate(fleet):
        pod = instance.instance_id  # the pod name, as the chart sets CONFIG_SERVICE_INSTANCE_ID
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "labels": {"app": "config-service"}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "config-service:test"}]},
        }
        control_plane.kubectl("apply", "-n", kube_namespace, "-f", "-", input=json.dumps(manifest))
        ready = "True" if index < 3 else "False"
        status = {
            "status": {
                "phase": "Running",
                "podIP": instance.host,
                "podIPs": [{"ip": instance.host}],
                "conditions": [
                    {"type": "Ready", "status": ready, "lastTransitionTime": "2026-11-26T10:00:00Z"}
                ],
            }
        }
        control_plane.kubectl(
            "patch",
            "pod",
            pod,
            "-n",
            kube_namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(status),
        )

    cloudmap = local_aws.client("servicediscovery")

    def healthy() -> set[str]:
        found = cloudmap.discover_instances(
            NamespaceName=local_aws.namespace_name, ServiceName=local_aws.service_name, HealthStatus="HEALTHY"
        )
        return {i["InstanceId"] for i in found["Instances"]}

    ids = {f"{kube_namespace}.{fleet[i].instance_id}" for i in range(3)}  # podSync ids: <namespace>.<pod>
    wait_for("the 3 Ready pods in Cloud Map", lambda: healthy() == ids)
    assert len(cloudmap.list_instances(ServiceId=local_aws.service_id)["Instances"]) == 3

    name = f"{local_aws.prefix}orders/db_url"
    version = int(
        local_aws.client("ssm").put_parameter(
            Name=name, Value="postgres://db-1", Type="String", Overwrite=True
        )["Version"]
    )

    def finished() -> dict[str, Any] | None:
        for item in kubectl_json(control_plane, "get", "configrefreshes", "-n", kube_namespace)["items"]:
            if item["spec"]["parameter"]["name"] == name and (item.get("status") or {}).get("phase") in {
                "Succeeded",
                "PartiallyFailed",
                "Failed",
            }:
                return dict(item)
        return None

    rollout = wait_for(f"{name} v{version} finished", finished)
    status = rollout["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["targets"], status["refreshed"], status["failed"]) == (3, 3, 0)
    addresses = {entry["address"] for entry in status["instances"]}
    assert addresses == {f"{fleet[i].host}:{port}" for i in range(3)}
    for instance in list(fleet)[:3]:
        entry = instance.get_config(name)
        assert (entry.value, int(entry.version)) == ("postgres://db-1", version)
    with pytest.raises(grpc.RpcError):
        fleet[3].get_config(name)  # the not-Ready pod was not called (and had not read it itself)
