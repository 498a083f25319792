"""High availability with kopf peering: two operator replicas, `--peering NAME --priority N`, against one
namespace and its KopfPeering, as the chart runs replicaCount 2.

- Resync and retention run on the active replica only: over several resync intervals the standby's pass
  counter stays 0 while its skipped counter grows, and the GetParametersByPath calls counted at the moto
  endpoint are the active replica's (one replica's worth, not two).
- The active replica is SIGKILLed during the bake between two waves of a rollout (some instances hold the
  change, the rest do not); the standby takes over once the killed replica's peering entry expires
  (lifetime 10 s here) and the rollout ends Succeeded on every instance, with one ConfigRefresh. From then
  on the former standby runs the resync passes.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack.controlplane.plane import ControlPlane
from devstack.stack.builder import Stack
from devstack.stack.kube import apply, get_json, route_object, wait_for, wait_route_ready
from devstack.stack.operator import OperatorProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
KOPF_CRDS = ROOT / "charts" / "config-refresh-operator" / "crds" / "kopf.dev_peerings.yaml"
PEERING = "config-refresh-ha"
ACTIVE_PRIORITY = 200
STANDBY_PRIORITY = 100
LIFETIME = 10
RESYNC_SECONDS = 4
INSTANCES = 8
PARAMETERS = 5  # one GetParametersByPath call per resync pass
HA_ENV = {
    "CONFIG_REFRESH_PEERING_LIFETIME_SECONDS": str(LIFETIME),
    # a message held by the killed replica comes back to the survivor after the visibility timeout
    "CONFIG_REFRESH_VISIBILITY_EXTENSION_SECONDS": "6",
    "CONFIG_REFRESH_RESYNC_GRACE_SECONDS": "1",
}
PASSES = 'config_refresh_resync_passes_total{outcome="ok"}'
SKIPPED = 'config_refresh_background_passes_skipped_total{loop="resync"}'
BY_PATH = 'config_refresh_parameter_store_calls_total{api="GetParametersByPath",outcome="ok"}'


def metric(operator: OperatorProcess, sample: str) -> float:
    """One Prometheus sample of this operator process, 0 when absent."""
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def _peering_ready(control_plane: ControlPlane, namespace: str) -> None:
    """kopf's peering CRDs (from the chart) and the namespace's KopfPeering, as the chart creates them."""
    control_plane.kubectl("apply", "-f", str(KOPF_CRDS))
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "customresourcedefinition/kopfpeerings.kopf.dev",
        "customresourcedefinition/clusterkopfpeerings.kopf.dev",
    )
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}}
    apply(control_plane, namespace, peering)


def _peers(stack: Stack) -> dict[str, Any]:
    return _peers_of(stack.control_plane, stack.namespace)


def _route_in_waves(stack: Stack, **refresh: Any) -> None:
    """A quarter of the fleet first, a bake, then the rest: a rollout with a middle to kill it in."""
    body = route_object(stack.route, local_aws=stack.local_aws, prefix=stack.local_aws.prefix, **refresh)
    body["spec"]["resync"] = {"intervalSeconds": RESYNC_SECONDS}
    body["spec"]["rollout"] = {"waves": ["25%"], "bakeSeconds": LIFETIME + 10}
    apply(stack.control_plane, stack.namespace, body)

    def indexed() -> bool:
        route = get_json(stack.control_plane, "configroute", stack.route, "-n", stack.namespace)
        return bool((route.get("status") or {}).get("observedGeneration") == route["metadata"]["generation"])

    wait_for(indexed, timeout=60, what="the route in waves indexed")


@pytest.mark.timeout(600)
def test_the_standby_reads_nothing_and_takes_over_a_rollout_when_the_active_replica_is_killed(
    control_plane: ControlPlane,
    kube_namespace: str,
    local_aws: Any,
    make_stack: Callable[..., Stack],
    operator_process: Callable[..., OperatorProcess],
) -> None:
    _peering_ready(control_plane, kube_namespace)
    ssm = local_aws.client("ssm")
    for index in range(PARAMETERS - 1):
        ssm.put_parameter(Name=f"{local_aws.prefix}base/p{index}", Value=f"v{index}", Type="String")
    refresh = {"maxConcurrency": 2, "maxAttempts": 20}
    stack = make_stack(
        INSTANCES,
        operator_env=HA_ENV,
        operator_peering=(PEERING, ACTIVE_PRIORITY),
        resync_seconds=RESYNC_SECONDS,
        **refresh,
    )
    active = stack.operator
    standby = operator_process(
        peering=(PEERING, STANDBY_PRIORITY), CONFIG_REFRESH_METRICS_PORT=str(free_port()), **HA_ENV
    )
    wait_for(lambda: len(_peers(stack)) == 2, timeout=60, what="both replicas in the KopfPeering")
    _route_in_waves(stack, **refresh)

    # Resync: the active replica's passes only.
    name = f"{stack.local_aws.prefix}orders/ha"
    version = stack.put(name, "first")  # PARAMETERS under the prefix now
    stack.wait_phase(name, version, {"Succeeded"}, timeout=120)
    wait_for(lambda: metric(active, PASSES) >= 1, timeout=60, what="a first resync pass on the active one")
    wait_for(lambda: metric(standby, SKIPPED) >= 1, timeout=60, what="a skipped pass on the standby")
    stack.local_aws.reset_call_counts()
    active_before = metric(active, BY_PATH)
    passes_before = metric(active, PASSES)
    skipped_before = metric(standby, SKIPPED)
    wait_for(
        lambda: metric(active, PASSES) >= passes_before + 3,
        timeout=10 * RESYNC_SECONDS + 60,
        what="three resync passes on the active replica",
    )
    active_calls = metric(active, BY_PATH) - active_before
    endpoint_calls = stack.local_aws.call_counts().get("ssm:GetParametersByPath", 0)
    assert metric(standby, PASSES) == 0
    assert metric(standby, BY_PATH) == 0
    assert metric(standby, SKIPPED) >= skipped_before + 2, "the standby's due passes were skipped"
    # A pass may straddle the window's edges (one call each); a second replica's passes would double it.
    print(
        f"\nHA resync window: active replica {active_calls:g} GetParametersByPath call(s), endpoint "
        f"counted {endpoint_calls}, standby skipped {metric(standby, SKIPPED) - skipped_before:g} pass(es)"
    )
    assert active_calls >= 3
    assert abs(endpoint_calls - active_calls) <= 1, (endpoint_calls, active_calls)

    # Failover mid-rollout: killed during the bake after the first wave.
    version = stack.put(name, "second")

    def first_wave_only() -> bool:
        held = sum(1 for _, seen in stack.values(name) if seen == version)
        return 0 < held < INSTANCES

    wait_for(first_wave_only, timeout=60, interval=0.1, what="the first wave applied, the rest baking")
    active.kill()
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"}, timeout=240)
    assert rollout["status"]["phase"] == "Succeeded", rollout["status"]
    assert rollout["status"]["progress"] == f"{INSTANCES}/{INSTANCES}"
    assert all(seen == version for _, seen in stack.values(name)), stack.values(name)
    of_version = [r for r in stack.refreshes_of(name) if r["spec"]["parameter"].get("version") == version]
    assert len(of_version) == 1, "one ConfigRefresh per version, whichever replica consumed the event"
    assert standby.is_running()

    # The survivor now runs the resync.
    wait_for(
        lambda: metric(standby, PASSES) >= 1,
        timeout=10 * RESYNC_SECONDS + 60,
        what="a resync pass on the replica that took over",
    )
    log = standby.log_text()
    assert log.index("This replica is now standby") < log.index("This replica is now active"), log[-3000:]


@pytest.mark.timeout(600)
def test_a_standby_consumer_records_a_change_for_a_route_created_after_it_started(
    control_plane: ControlPlane,
    kube_namespace: str,
    local_aws: Any,
    service_fleet: Callable[..., Any],
    operator_process: Callable[..., OperatorProcess],
) -> None:
    _peering_ready(control_plane, kube_namespace)
    # The active replica long-polls a queue nothing writes to, so the change can only reach the standby.
    elsewhere = local_aws.client("sqs").create_queue(QueueName=f"{kube_namespace}-elsewhere")["QueueUrl"]
    active = operator_process(
        peering=(PEERING, ACTIVE_PRIORITY), CONFIG_REFRESH_QUEUE_URL=elsewhere, **HA_ENV
    )
    wait_for(lambda: len(_peers_of(control_plane, kube_namespace)) == 1, timeout=60, what="the active peer")
    # kopf starts a peering replica paused and resumes it only if no live peer has a higher priority: the
    # active one is already listed, so the standby's route handlers never run.
    standby = operator_process(
        peering=(PEERING, STANDBY_PRIORITY), CONFIG_REFRESH_METRICS_PORT=str(free_port()), **HA_ENV
    )
    wait_for(lambda: len(_peers_of(control_plane, kube_namespace)) == 2, timeout=60, what="both peers")
    fleet = service_fleet(2, local_aws=local_aws)
    for instance in fleet:
        local_aws.register_instance(instance.instance_id, instance.host, instance.refresh_port)
    body = route_object("services", local_aws=local_aws)
    apply(control_plane, kube_namespace, body)
    wait_route_ready(control_plane, kube_namespace, "services")  # indexed by the active replica only
    stack = Stack(
        control_plane=control_plane,
        local_aws=local_aws,
        namespace=kube_namespace,
        fleet=fleet,
        route="services",
        operator=active,
    )

    name = f"{local_aws.prefix}orders/late"
    version = stack.put(name, "after-the-standby-started")
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"}, timeout=120)
    assert rollout["status"]["phase"] == "Succeeded", rollout["status"]
    assert all(seen == version for _, seen in stack.values(name)), stack.values(name)
    log = standby.log_text()
    assert "the watch had not delivered here" in log, log[-3000:]
    assert "no ConfigRoute claims" not in log, log[-3000:]


def _peers_of(control_plane: ControlPlane, namespace: str) -> dict[str, Any]:
    body = get_json(control_plane, "kopfpeering", PEERING, "-n", namespace)
    status: dict[str, Any] = body.get("status") or {}
    return status
