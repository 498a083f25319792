"""podSync end to end: a real kube-apiserver, moto's Cloud Map, the podSync handlers run by kopf.

There is no kubelet: each test creates Pod objects and patches ``pods/status`` itself (podIP 127.0.0.x,
the Ready condition), exactly what a kubelet would report. The operator runs as a separate process
(``kopf run --standalone -n NS -m refresh_operator.podsync.standalone``) pointed at the test's namespace
and the local AWS endpoint. Every wait polls a condition with a generous bound; timings are printed,
never asserted.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from kubernetes import client

from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.network.fault_proxy import FaultProxy
from devstack.stack.kube import wait_until

ROUTE = "orders"
PORT = 50051
MANAGED_BY = "config-refresh-operator"


@dataclass
class Cluster:
    """The test's view of Kubernetes and Cloud Map."""

    plane: ControlPlane
    namespace: str
    aws: LocalAws
    core: client.CoreV1Api
    custom: client.CustomObjectsApi

    # ---- pods --------------------------------------------------------------------------------------

    def create_pod(self, name: str, labels: dict[str, str] | None = None) -> None:
        manifest: Any = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {"app": "orders", "tenant": "acme"} if labels is None else labels,
            },
            # A node name makes deletion graceful: deletionTimestamp first, gone later.
            "spec": {
                "nodeName": "node-a",
                "containers": [{"name": "app", "image": "config-service:test"}],
            },
        }
        self.core.create_namespaced_pod(self.namespace, manifest)

    def set_ready(self, name: str, ready: bool, ip: str | None = None) -> None:
        status: dict[str, Any] = {
            "phase": "Running",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            ],
        }
        if ip is not None:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})

    def label_pod(self, name: str, labels: dict[str, str]) -> None:
        self.core.patch_namespaced_pod(name, self.namespace, {"metadata": {"labels": labels}})

    def delete_pod(self, name: str, grace_seconds: int) -> None:
        self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=grace_seconds)

    # ---- routes ------------------------------------------------------------------------------------

    def create_route(self, *, service: str | None = None, name: str = ROUTE) -> None:
        self.custom.create_namespaced_custom_object(
            "configrefresh.io",
            "v1alpha1",
            self.namespace,
            "configroutes",
            {
                "apiVersion": "configrefresh.io/v1alpha1",
                "kind": "ConfigRoute",
                "metadata": {"name": name},
                "spec": {
                    "parameterPrefix": "/config-service/",
                    "discovery": {
                        "cloudMap": {
                            "namespace": self.aws.namespace_name,
                            "service": service or self.aws.service_name,
                        }
                    },
                    "refresh": {"port": PORT},
                    "podSync": {
                        "selector": {"matchLabels": {"app": "orders"}},
                        "port": PORT,
                        "attributesFromLabels": ["tenant"],
                    },
                },
            },
        )

    def route_status(self, name: str = ROUTE) -> dict[str, Any]:
        route: Any = self.custom.get_namespaced_custom_object(
            "configrefresh.io", "v1alpha1", self.namespace, "configroutes", name
        )
        status: dict[str, Any] = route.get("status") or {}
        return status

    def synced_condition(self, name: str = ROUTE) -> dict[str, Any] | None:
        for condition in self.route_status(name).get("conditions") or ():
            if condition.get("type") == "CloudMapSynced":
                return dict(condition)
        return None

    def events(self, reason: str) -> list[Any]:
        items = self.core.list_namespaced_event(self.namespace).items
        return [e for e in items if e.reason == reason and e.involved_object.kind == "ConfigRoute"]

    # ---- Cloud Map ---------------------------------------------------------------------------------

    def iid(self, pod: str) -> str:
        """The Cloud Map instance id podSync gives a pod of this namespace."""
        return f"{self.namespace}.{pod}"

    def discover(self, health: str = "HEALTHY") -> dict[str, dict[str, str]]:
        found = self.aws.client("servicediscovery").discover_instances(
            NamespaceName=self.aws.namespace_name, ServiceName=self.aws.service_name, HealthStatus=health
        )
        return {i["InstanceId"]: i["Attributes"] for i in found["Instances"]}

    def instances(self) -> dict[str, dict[str, str]]:
        listed = self.aws.client("servicediscovery").list_instances(ServiceId=self.aws.service_id)
        return {i["Id"]: i.get("Attributes", {}) for i in listed["Instances"]}


@dataclass
class Operator:
    process: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def cluster(control_plane: ControlPlane, kube_namespace: str, local_aws: LocalAws) -> Iterator[Cluster]:
    api = control_plane.api_client()
    try:
        yield Cluster(
            control_plane, kube_namespace, local_aws, client.CoreV1Api(api), client.CustomObjectsApi(api)
        )
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def start_operator(cluster: Cluster, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def start(interval: float = 60.0, **extra_env: str) -> Operator:
        log_path = tmp_path / f"operator-{len(started)}.log"
        env = dict(os.environ)
        env.update(cluster.aws.env())
        env["KUBECONFIG"] = str(cluster.plane.kubeconfig)
        env["CONFIG_REFRESH_PODSYNC_INTERVAL_SECONDS"] = str(interval)
        env.update(extra_env)
        env.pop("KUBERNETES_SERVICE_HOST", None)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kopf",
                    "run",
                    "--standalone",
                    "-n",
                    cluster.namespace,
                    "-m",
                    "refresh_operator.podsync.standalone",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        operator = Operator(process, log_path)
        started.append(operator)
        return operator

    yield start
    for operator in started:
        if operator.process.poll() is None:
            operator.process.send_signal(signal.SIGTERM)
            try:
                operator.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                operator.process.kill()
                operator.process.wait(timeout=5)
        # Shown by pytest only when the test failed.
        print(f"--- operator log {operator.log_path} ---\n{operator.tail()}")


def running_route(
    cluster: Cluster, start_operator: Callable[..., Operator], interval: float = 60.0, **extra_env: str
) -> Operator:
    """A podSync route with its operator running and its first reconcile done."""
    cluster.create_route()
    operator = start_operator(interval=interval, **extra_env)
    wait_until(
        "the first CloudMapSynced=True", lambda: (cluster.synced_condition() or {}).get("status") == "True"
    )
    return operator


def counts(cluster: Cluster) -> tuple[int | None, int | None]:
    status = cluster.route_status()
    return (status.get("registered"), status.get("healthy"))


def expected_attributes(cluster: Cluster, pod: str, ip: str, tenant: str = "acme") -> dict[str, str]:
    return {
        "AWS_INSTANCE_IPV4": ip,
        "AWS_INSTANCE_PORT": str(PORT),
        "tenant": tenant,
        "k8s-namespace": cluster.namespace,
        "k8s-pod": pod,
        "managed-by": MANAGED_BY,
    }


def test_ready_pods_are_registered_with_their_attributes_and_counted(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    running_route(cluster, start_operator)
    pods = {f"orders-{i}": f"127.0.0.{21 + i}" for i in range(3)}
    for name in pods:
        cluster.create_pod(name)
    cluster.create_pod("billing-0", labels={"app": "billing"})
    cluster.set_ready("billing-0", True, ip="127.0.0.40")
    for name, ip in pods.items():
        cluster.set_ready(name, True, ip=ip)

    healthy = wait_until(
        "3 healthy instances", lambda: found if len(found := cluster.discover()) == 3 else None
    )
    assert healthy == {cluster.iid(name): expected_attributes(cluster, name, ip) for name, ip in pods.items()}
    status = wait_until(
        "status counts 3/3", lambda: s if (s := cluster.route_status()).get("healthy") == 3 else None
    )
    assert status["registered"] == 3
    assert (cluster.synced_condition() or {})["reason"] == "Synced"


def test_a_pod_that_is_not_ready_yet_is_not_registered(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    running_route(cluster, start_operator)
    cluster.create_pod("orders-0")
    cluster.create_pod("orders-1")
    cluster.set_ready("orders-0", False, ip="127.0.0.21")
    cluster.set_ready("orders-1", True, ip="127.0.0.22")
    wait_until("orders-1 registered", lambda: cluster.iid("orders-1") in cluster.instances())
    assert cluster.iid("orders-0") not in cluster.instances()


def test_ready_false_is_excluded_from_healthy_discovery_and_true_brings_it_back(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    running_route(cluster, start_operator)
    cluster.create_pod("orders-0")
    cluster.set_ready("orders-0", True, ip="127.0.0.21")
    wait_until("orders-0 healthy", lambda: cluster.iid("orders-0") in cluster.discover())
    wait_until("status 1 registered, 1 healthy", lambda: counts(cluster) == (1, 1))

    cluster.set_ready("orders-0", False)
    wait_until("orders-0 out of HEALTHY", lambda: cluster.iid("orders-0") not in cluster.discover())
    assert cluster.iid("orders-0") in cluster.discover("UNHEALTHY")
    wait_until("status 1 registered, 0 healthy", lambda: counts(cluster) == (1, 0))

    cluster.set_ready("orders-0", True)
    wait_until("orders-0 healthy again", lambda: cluster.iid("orders-0") in cluster.discover())


def test_a_deleted_pod_is_unhealthy_at_once_and_deregistered_when_gone(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    running_route(cluster, start_operator)
    cluster.create_pod("orders-0")
    cluster.set_ready("orders-0", True, ip="127.0.0.21")
    wait_until("orders-0 healthy", lambda: cluster.iid("orders-0") in cluster.discover())

    cluster.delete_pod("orders-0", grace_seconds=300)  # terminating: deletionTimestamp set, pod still there
    wait_until("terminating pod out of HEALTHY", lambda: cluster.iid("orders-0") not in cluster.discover())
    assert cluster.iid("orders-0") in cluster.instances()

    cluster.delete_pod("orders-0", grace_seconds=0)  # gone
    wait_until("orders-0 deregistered", lambda: cluster.iid("orders-0") not in cluster.instances())


def test_a_label_change_updates_the_attributes(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    running_route(cluster, start_operator)
    cluster.create_pod("orders-0")
    cluster.set_ready("orders-0", True, ip="127.0.0.21")
    wait_until("orders-0 healthy", lambda: cluster.iid("orders-0") in cluster.discover())

    cluster.label_pod("orders-0", {"tenant": "globex"})
    found = wait_until(
        "tenant=globex on orders-0",
        lambda: (
            f
            if (f := cluster.discover()).get(cluster.iid("orders-0"), {}).get("tenant") == "globex"
            else None
        ),
    )
    assert found == {
        cluster.iid("orders-0"): expected_attributes(cluster, "orders-0", "127.0.0.21", tenant="globex")
    }

    cluster.label_pod("orders-0", {"app": "retired"})  # leaves the selector: no longer this route's pod
    wait_until(
        "orders-0 deregistered after leaving the selector",
        lambda: cluster.iid("orders-0") not in cluster.instances(),
    )


def test_drift_is_repaired_both_ways_and_foreign_instances_are_left_alone(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    running_route(cluster, start_operator, interval=1.0)
    cluster.create_pod("orders-0")
    cluster.set_ready("orders-0", True, ip="127.0.0.21")
    wait_until("orders-0 healthy", lambda: cluster.iid("orders-0") in cluster.discover())

    cluster.aws.register_instance(
        "stray", "127.0.0.99", PORT, attributes={"managed-by": MANAGED_BY, "k8s-namespace": cluster.namespace}
    )
    cluster.aws.register_instance("foreign", "127.0.0.98", PORT, attributes={"owner": "someone-else"})
    cluster.aws.deregister_instance(cluster.iid("orders-0"))

    wait_until("stray removed", lambda: "stray" not in cluster.instances())
    restored = wait_until(
        "orders-0 restored", lambda: f if cluster.iid("orders-0") in (f := cluster.discover()) else None
    )
    assert restored[cluster.iid("orders-0")] == expected_attributes(cluster, "orders-0", "127.0.0.21")
    # Two more reconcile rounds at 1 s: the foreign instance is still there, untouched.
    time_of_check = time.monotonic()
    wait_until("two more reconcile rounds", lambda: time.monotonic() - time_of_check > 2.5, every=0.25)
    assert cluster.instances()["foreign"] == {
        "AWS_INSTANCE_IPV4": "127.0.0.98",
        "AWS_INSTANCE_PORT": str(PORT),
        "owner": "someone-else",
    }


def test_a_missing_service_sets_an_actionable_condition_and_an_event(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    cluster.create_route(service="no-such-service")
    start_operator()
    condition = wait_until(
        "CloudMapSynced=False",
        lambda: c if (c := cluster.synced_condition()) and c["status"] == "False" else None,
    )
    assert condition["reason"] == "ServiceNotFound"
    assert '"no-such-service" does not exist' in condition["message"]
    assert "HealthCheckCustomConfig" in condition["message"]
    event = wait_until("a ServiceNotFound event", lambda: cluster.events("ServiceNotFound"))[0]
    assert event.type == "Warning"
    assert "no-such-service" in event.message

    # The operator keeps running: a pod event on the broken route is reported, not crashed on.
    cluster.create_pod("orders-0")
    cluster.set_ready("orders-0", True, ip="127.0.0.21")
    wait_until("a pod event handled", lambda: cluster.route_status().get("registered") == 0)
    assert cluster.instances() == {}


def test_throttled_registration_backs_off_then_succeeds(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    running_route(cluster, start_operator)
    cluster.create_pod("orders-0")
    cluster.aws.inject_fault(action="servicediscovery:RegisterInstance", error="ThrottlingException", count=4)
    cluster.set_ready("orders-0", True, ip="127.0.0.21")

    wait_until("orders-0 healthy despite throttling", lambda: cluster.iid("orders-0") in cluster.discover())
    assert cluster.aws.pending_faults() == []
    wait_until(
        "CloudMapSynced back to True", lambda: (cluster.synced_condition() or {}).get("status") == "True"
    )


def test_registration_over_reset_connections_is_retried_then_succeeds(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    """Cloud Map unreachable for a moment (every connection reset: `ConnectionClosedError`, no AWS
    answer): the registration of a pod that turns Ready meanwhile is retried and lands once the network
    is back, well before the next reconcile (60 s), and the operator keeps running."""
    endpoint = urlparse(cluster.aws.endpoint_url)
    assert endpoint.hostname is not None
    assert endpoint.port is not None
    with FaultProxy((endpoint.hostname, endpoint.port)) as proxy:
        operator = running_route(cluster, start_operator, CONFIG_REFRESH_AWS_ENDPOINT_URL=proxy.url)
        cluster.create_pod("orders-0")
        proxy.set_mode("reset")
        cluster.set_ready("orders-0", True, ip="127.0.0.21")
        wait_until("podSync meeting reset connections", lambda: proxy.accepted("reset") >= 2)
        proxy.set_mode("pass")
        wait_until(
            "orders-0 healthy after the outage",
            lambda: cluster.iid("orders-0") in cluster.discover(),
            timeout=30,  # half the reconcile interval: the event's own retries brought it
        )
        assert operator.process.poll() is None, operator.tail()


def test_time_from_ready_patch_to_discoverable(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    """Figure for issue 6: Ready patch → in DiscoverInstances(HEALTHY), per pod, one pod at a time."""
    running_route(cluster, start_operator)
    count = 25
    for i in range(count):
        cluster.create_pod(f"orders-{i}")
    samples: list[float] = []
    for i in range(count):
        name = f"orders-{i}"
        started = time.monotonic()
        cluster.set_ready(name, True, ip=f"127.0.0.{21 + i}")
        instance_id = cluster.iid(name)
        wait_until(f"{name} discoverable", lambda: instance_id in cluster.discover(), every=0.002)  # noqa: B023
        samples.append((time.monotonic() - started) * 1000)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    print(
        f"\npodSync Ready patch -> discoverable over {count} pods: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {samples[-1]:.1f} ms"
    )
    assert len(cluster.discover()) == count


def test_cloud_map_synced_lives_beside_another_managers_ready_condition(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    """Server-side apply on a list-map: podSync owns only its condition, and restores it if overwritten."""
    running_route(cluster, start_operator)
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Indexed",
        "message": "claims parameters under /config-service/",
        "lastTransitionTime": "2026-11-26T10:00:00Z",
    }
    manifest = {
        "apiVersion": "configrefresh.io/v1alpha1",
        "kind": "ConfigRoute",
        "metadata": {"name": ROUTE, "namespace": cluster.namespace},
        "status": {"conditions": [ready]},
    }
    cluster.plane.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--subresource=status",
        "--field-manager=config-refresh-core-test",
        "-f",
        "-",
        input=json.dumps(manifest),
    )
    cluster.create_pod("orders-0")
    cluster.set_ready("orders-0", True, ip="127.0.0.21")
    wait_until("status 1 registered, 1 healthy", lambda: counts(cluster) == (1, 1))
    types = {c["type"]: c["status"] for c in cluster.route_status()["conditions"]}
    assert types == {"Ready": "True", "CloudMapSynced": "True"}

    # A merge patch of the whole list from a stale copy drops CloudMapSynced: podSync writes it again.
    cluster.custom.patch_namespaced_custom_object_status(
        "configrefresh.io",
        "v1alpha1",
        cluster.namespace,
        "configroutes",
        ROUTE,
        {"status": {"conditions": [ready]}},
    )
    wait_until("CloudMapSynced restored", lambda: (cluster.synced_condition() or {}).get("status") == "True")
    assert {c["type"] for c in cluster.route_status()["conditions"]} == {"Ready", "CloudMapSynced"}


def test_deleting_the_route_deregisters_its_pods_only(
    cluster: Cluster, start_operator: Callable[..., Operator]
) -> None:
    running_route(cluster, start_operator)
    cluster.create_pod("orders-0")
    cluster.set_ready("orders-0", True, ip="127.0.0.21")
    wait_until("orders-0 healthy", lambda: cluster.iid("orders-0") in cluster.discover())
    cluster.aws.register_instance("foreign", "127.0.0.98", PORT, attributes={"owner": "someone-else"})

    cluster.custom.delete_namespaced_custom_object(
        "configrefresh.io", "v1alpha1", cluster.namespace, "configroutes", ROUTE
    )
    wait_until(
        "orders-0 deregistered with its route", lambda: cluster.iid("orders-0") not in cluster.instances()
    )
    assert set(cluster.instances()) == {"foreign"}
