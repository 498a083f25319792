"""podSync with one Cloud Map service shared by several Kubernetes namespaces (a multi-tenant fleet).

The same StatefulSet ``svc`` deployed in namespaces A and B gives two pods named ``svc-0``. Both routes
sync into the same Cloud Map service, so each pod needs its own instance: if the instance id were the pod
name alone, B's registration would overwrite A's (one address for two pods) and B's pod deletion would
remove A's instance. These tests run the podSync handlers as a separate kopf process against a real
kube-apiserver and moto's Cloud Map, with no kubelet: they create Pod objects and patch ``pods/status``
themselves. Every wait polls with a generous bound; timings are printed, never asserted.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.stack.kube import wait_until

PORT = 50051
MANAGED_BY = "config-refresh-operator"
ROUTE = "svc"


@dataclass
class Fleet:
    """Two Kubernetes namespaces whose podSync routes share the provisioned Cloud Map service."""

    plane: ControlPlane
    aws: LocalAws
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    namespaces: tuple[str, str]

    def create_pod(self, namespace: str, name: str, ip: str, *, ready: bool = True) -> None:
        manifest: Any = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "svc"}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "config-service:test"}]},
        }
        self.core.create_namespaced_pod(namespace, manifest)
        status: Any = {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "lastTransitionTime": "2026-11-26T10:00:00Z",
                    }
                ],
            }
        }
        self.core.patch_namespaced_pod_status(name, namespace, status)

    def delete_pod(self, namespace: str, name: str) -> None:
        self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

    def create_route(self, namespace: str) -> None:
        self.custom.create_namespaced_custom_object(
            "configrefresh.io",
            "v1alpha1",
            namespace,
            "configroutes",
            {
                "apiVersion": "configrefresh.io/v1alpha1",
                "kind": "ConfigRoute",
                "metadata": {"name": ROUTE},
                "spec": {
                    "parameterPrefix": "/config-service/",
                    "discovery": {
                        "cloudMap": {"namespace": self.aws.namespace_name, "service": self.aws.service_name}
                    },
                    "refresh": {"port": PORT},
                    "podSync": {"selector": {"matchLabels": {"app": "svc"}}, "port": PORT},
                },
            },
        )

    def route_status(self, namespace: str) -> dict[str, Any]:
        route: Any = self.custom.get_namespaced_custom_object(
            "configrefresh.io", "v1alpha1", namespace, "configroutes", ROUTE
        )
        status: dict[str, Any] = route.get("status") or {}
        return status

    def synced(self, namespace: str) -> bool:
        conditions = self.route_status(namespace).get("conditions") or ()
        return any(c.get("type") == "CloudMapSynced" and c.get("status") == "True" for c in conditions)

    def instances(self) -> dict[str, dict[str, str]]:
        listed = self.aws.client("servicediscovery").list_instances(ServiceId=self.aws.service_id)
        return {i["Id"]: i.get("Attributes", {}) for i in listed["Instances"]}

    def healthy(self) -> dict[str, dict[str, str]]:
        found = self.aws.client("servicediscovery").discover_instances(
            NamespaceName=self.aws.namespace_name, ServiceName=self.aws.service_name, HealthStatus="HEALTHY"
        )
        return {i["InstanceId"]: i["Attributes"] for i in found["Instances"]}

    def healthy_pods(self) -> dict[tuple[str, str], str]:
        """(k8s namespace, pod) → IPv4 of every HEALTHY instance that names a pod, whatever its id."""
        return {
            (attrs["k8s-namespace"], attrs["k8s-pod"]): attrs["AWS_INSTANCE_IPV4"]
            for attrs in self.healthy().values()
            if "k8s-namespace" in attrs and "k8s-pod" in attrs
        }

    def writes(self) -> int:
        counts = self.aws.call_counts()
        return sum(
            counts.get(f"servicediscovery:{api}", 0) for api in ("RegisterInstance", "DeregisterInstance")
        )


@pytest.fixture
def fleet(control_plane: ControlPlane, kube_namespace: str, local_aws: LocalAws) -> Iterator[Fleet]:
    other = control_plane.create_namespace(f"{kube_namespace[:50]}-b{uuid.uuid4().hex[:4]}")
    api = control_plane.api_client()
    try:
        yield Fleet(
            control_plane,
            local_aws,
            client.CoreV1Api(api),
            client.CustomObjectsApi(api),
            (kube_namespace, other),
        )
    finally:
        api.close()  # type: ignore[no-untyped-call]
        control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)


@pytest.fixture
def start_operator(fleet: Fleet, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``kopf run -m refresh_operator.podsync.standalone`` watching the given namespaces."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(*namespaces: str, interval: float = 1.0) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"operator-{len(started)}.log"
        env = dict(os.environ)
        env.update(fleet.aws.env())
        env["KUBECONFIG"] = str(fleet.plane.kubeconfig)
        env["CONFIG_REFRESH_PODSYNC_INTERVAL_SECONDS"] = str(interval)
        env.pop("KUBERNETES_SERVICE_HOST", None)
        watch = [arg for namespace in namespaces for arg in ("-n", namespace)]
        command = [sys.executable, "-m", "kopf", "run", "--standalone", *watch]
        command += ["-m", "refresh_operator.podsync.standalone"]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        started.append((process, log_path))
        return process

    yield start
    for process, log_path in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])
        print(f"--- operator log {log_path} ---\n{tail}")  # shown by pytest only when the test failed


def observe_writes(fleet: Fleet, rounds: float) -> int:
    """Cloud Map writes (register + deregister) made while `rounds` reconcile intervals of 1 s pass."""
    fleet.aws.reset_call_counts()
    until = time.monotonic() + rounds
    wait_until(
        f"{rounds} s of reconciles", lambda: time.monotonic() >= until, timeout=rounds + 30, every=0.25
    )
    return fleet.writes()


def test_same_pod_name_in_two_namespaces_gets_two_instances_that_stay_put(
    fleet: Fleet, start_operator: Callable[..., subprocess.Popen[bytes]]
) -> None:
    a, b = fleet.namespaces
    for namespace in (a, b):
        fleet.create_route(namespace)
    start_operator(a, b, interval=1.0)
    for namespace in (a, b):
        wait_until(f"CloudMapSynced=True on {namespace}", functools.partial(fleet.synced, namespace))

    fleet.create_pod(a, "svc-0", "127.0.0.21")
    fleet.create_pod(b, "svc-0", "127.0.0.22")
    expected = {(a, "svc-0"): "127.0.0.21", (b, "svc-0"): "127.0.0.22"}
    wait_until("svc-0 of both namespaces HEALTHY", lambda: fleet.healthy_pods() == expected)
    instances = fleet.instances()
    assert len(instances) == 2, instances
    assert all(len(instance_id) <= 64 for instance_id in instances)
    for namespace in (a, b):

        def counted(namespace: str = namespace) -> bool:
            s = fleet.route_status(namespace)
            return (s.get("registered"), s.get("healthy")) == (1, 1)

        wait_until(f"{namespace} counts 1 registered, 1 healthy", counted)

    # Drift repair in either route must leave the other namespace's instance alone: no flapping.
    writes = observe_writes(fleet, rounds=4.0)
    print(f"\nCloud Map writes during 4 reconcile rounds of 2 routes: {writes}")
    assert writes == 0
    assert fleet.healthy_pods() == expected

    # Deleting B's svc-0 removes B's instance only.
    fleet.delete_pod(b, "svc-0")

    def namespaces_registered() -> list[str] | None:
        # Not just out of HEALTHY (a terminating pod is UNHEALTHY first): deregistered once gone.
        held = sorted(attrs.get("k8s-namespace", "") for attrs in fleet.instances().values())
        return held if b not in held else None

    assert wait_until("B's svc-0 deregistered", namespaces_registered) == [a]
    assert fleet.healthy_pods() == {(a, "svc-0"): "127.0.0.21"}
    assert observe_writes(fleet, rounds=3.0) == 0
    assert fleet.healthy_pods() == {(a, "svc-0"): "127.0.0.21"}


def test_an_operator_watching_one_namespace_leaves_another_namespaces_instances_alone(
    fleet: Fleet, start_operator: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """Two operator releases (one per tenant namespace) share a Cloud Map service."""
    a, b = fleet.namespaces
    # What the other release registered for its own pod: managed by the operator, namespace B.
    fleet.aws.register_instance(
        f"{b}.svc-0",
        "127.0.0.22",
        PORT,
        attributes={"k8s-namespace": b, "k8s-pod": "svc-0", "managed-by": MANAGED_BY},
    )
    fleet.create_route(a)
    start_operator(a, interval=1.0)
    wait_until("CloudMapSynced=True", lambda: fleet.synced(a))
    fleet.create_pod(a, "svc-0", "127.0.0.21")
    wait_until("A's svc-0 HEALTHY", lambda: (a, "svc-0") in fleet.healthy_pods())

    assert observe_writes(fleet, rounds=4.0) == 0
    assert fleet.healthy_pods() == {(a, "svc-0"): "127.0.0.21", (b, "svc-0"): "127.0.0.22"}


def test_instances_registered_under_the_pod_name_move_to_the_new_id_without_a_gap(
    fleet: Fleet, start_operator: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """Migration from the old id (the bare pod name): register the new id, then deregister the old one."""
    a, b = fleet.namespaces
    fleet.create_route(a)
    fleet.create_pod(a, "svc-0", "127.0.0.21")
    fleet.create_pod(a, "svc-1", "127.0.0.23", ready=False)
    old = {"managed-by": MANAGED_BY, "k8s-namespace": a}
    # What the previous operator version left: ids = pod names.
    fleet.aws.register_instance("svc-0", "127.0.0.21", PORT, attributes={**old, "k8s-pod": "svc-0"})
    fleet.aws.register_instance(
        "svc-1", "127.0.0.23", PORT, attributes={**old, "k8s-pod": "svc-1"}, healthy=False
    )
    fleet.aws.register_instance("svc-9", "127.0.0.29", PORT, attributes={**old, "k8s-pod": "svc-9"})
    # Not ours to touch: no managed-by, and another namespace's instance under the old scheme.
    fleet.aws.register_instance("svc-2", "127.0.0.98", PORT, attributes={"owner": "someone-else"})
    fleet.aws.register_instance(
        "svc-5",
        "127.0.0.97",
        PORT,
        attributes={"managed-by": MANAGED_BY, "k8s-namespace": b, "k8s-pod": "svc-5"},
    )

    gaps: list[float] = []
    samples = 0
    stop = threading.Event()

    def watch() -> None:
        # svc-0 is Ready throughout: some HEALTHY instance must point at it in every sample.
        nonlocal samples
        while not stop.is_set():
            if "127.0.0.21" not in {
                attrs["AWS_INSTANCE_IPV4"]
                for attrs in fleet.healthy().values()
                if attrs.get("k8s-pod") == "svc-0"
            }:
                gaps.append(time.monotonic())
            samples += 1

    # Slow registrations down (throttled, then retried with backoff): a deregistration that did not wait
    # for its successor would leave svc-0 out of discovery for long enough to be seen.
    fleet.aws.inject_fault(action="servicediscovery:RegisterInstance", error="ThrottlingException", count=5)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        start_operator(a, interval=1.0)
        migrated = wait_until(
            "svc-0 and svc-1 moved off their old ids, svc-9 gone",
            lambda: i if not {"svc-0", "svc-1", "svc-9"} & set(i := fleet.instances()) else None,
        )
        wait_until("CloudMapSynced=True", lambda: fleet.synced(a))
    finally:
        stop.set()
        watcher.join(timeout=30)
    print(f"\nmigration watched with {samples} DiscoverInstances samples, {len(gaps)} without svc-0")
    assert gaps == []
    mine = {attrs["k8s-pod"]: i for i, attrs in migrated.items() if attrs.get("k8s-namespace") == a}
    assert set(mine) == {"svc-0", "svc-1"}, migrated  # svc-9's pod does not exist: removed, not moved
    assert all(pod in instance_id and pod != instance_id for pod, instance_id in mine.items())
    assert migrated[mine["svc-0"]]["AWS_INSTANCE_IPV4"] == "127.0.0.21"
    # svc-1 was registered UNHEALTHY (not Ready): it keeps its registration, still UNHEALTHY.
    assert fleet.healthy_pods() == {(a, "svc-0"): "127.0.0.21", (b, "svc-5"): "127.0.0.97"}
    wait_until(
        "status 2 registered, 1 healthy",
        lambda: ((s := fleet.route_status(a)).get("registered"), s.get("healthy")) == (2, 1),
    )
    assert migrated["svc-2"] == {
        "AWS_INSTANCE_IPV4": "127.0.0.98",
        "AWS_INSTANCE_PORT": str(PORT),
        "owner": "someone-else",
    }
    assert migrated["svc-5"]["k8s-namespace"] == b
    assert set(migrated) == {*mine.values(), "svc-2", "svc-5"}
    assert observe_writes(fleet, rounds=3.0) == 0
