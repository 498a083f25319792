"""The same path at 100 instances: measured and printed (never asserted on timing), run by `-m slow`."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest

from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.stack.kube import apply, route_object, wait_route_ready
from devstack.stack.operator import OperatorProcess


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_hundred_instances_receive_every_change(
    control_plane: ControlPlane,
    local_aws: LocalAws,
    kube_namespace: str,
    service_fleet: Callable[..., Any],
    operator_process: Callable[..., OperatorProcess],
) -> None:
    fleet = service_fleet(100, local_aws=local_aws, timeout=600)
    for instance in fleet:
        local_aws.register_instance(instance.instance_id, instance.host, instance.refresh_port)
    apply(
        control_plane,
        kube_namespace,
        route_object("fleet", local_aws=local_aws, prefix=local_aws.prefix, maxConcurrency=100),
    )
    operator_process()
    wait_route_ready(control_plane, kube_namespace, "fleet")
    ssm = local_aws.client("ssm")
    name = f"{local_aws.prefix}scale/probe"
    latencies: list[float] = []
    for index in range(21):
        version = int(
            ssm.put_parameter(Name=name, Value=f"v{index}", Type="String", Overwrite=True)["Version"]
        )
        deadline = time.monotonic() + 120
        rollout: dict[str, Any] | None = None
        while time.monotonic() < deadline and rollout is None:
            for item in _refreshes(control_plane, kube_namespace):
                status = item.get("status") or {}
                if item["spec"]["parameter"].get("version") == version and status.get("phase") == "Succeeded":
                    rollout = item
            time.sleep(0.2)
        assert rollout is not None, f"v{version} did not succeed"
        assert rollout["status"]["progress"] == "100/100"
        if index:  # the first change warms the channels
            latencies.append(float(rollout["status"]["latencyMs"]))
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    print(
        f"\nlatency, 100 instances, {len(ordered)} changes: PutParameter commit -> last ack "
        f"(status.latencyMs): p50 {statistics.median(ordered):.0f} ms, p99 {p99:.0f} ms"
    )
    last = fleet[99].get_config(name)
    assert last.value == "v20"


def _refreshes(control_plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    import json

    items: list[dict[str, Any]] = json.loads(
        control_plane.kubectl("get", "configrefreshes", "-n", namespace, "-o", "json").stdout
    )["items"]
    return items
