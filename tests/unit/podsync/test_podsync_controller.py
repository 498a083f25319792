"""podSync's controller over time: event path, reconcile, status and events, with in-memory fakes.

The fakes (unit tier only) hold a Cloud Map service and record status applies and Events; the same
controller runs against moto and a real API server in tests/e2e/test_podsync_e2e.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from refresh_operator.cloudmap import ServiceRef
from refresh_operator.podsync.controller import PodSyncController
from refresh_operator.podsync.reconcile import ActualInstance
from refresh_operator.settings import load_settings
from tests.unit.fakes.aws import FakeCloudMap
from tests.unit.fakes.kube import FakeKube

SERVICE = ServiceRef("srv-1", "ns-1", "config-refresh", "config-service")


ROUTE: dict[str, Any] = {
    "apiVersion": "configrefresh.io/v1alpha1",
    "kind": "ConfigRoute",
    "metadata": {"namespace": "team-a", "name": "orders", "generation": 1},
    "spec": {
        "parameterPrefix": "/config-service/",
        "discovery": {"cloudMap": {"namespace": "config-refresh", "service": "config-service"}},
        "podSync": {"selector": {"matchLabels": {"app": "orders"}}, "port": 50051},
    },
}


def pod(
    name: str, *, ready: bool = True, app: str = "orders", namespace: str = "team-a", ip: str = "127.0.0.21"
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "labels": {"app": app}},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


def route_in(namespace: str) -> dict[str, Any]:
    return {**ROUTE, "metadata": {**ROUTE["metadata"], "namespace": namespace}}


MANAGED = {"managed-by": "config-refresh-operator"}


@dataclasses.dataclass
class Harness:
    controller: PodSyncController
    cloudmap: FakeCloudMap
    kube: FakeKube
    events: list[tuple[str, str]]

    def last_status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.kube.applied[-1]["status"]
        return status


@pytest.fixture
def harness() -> Harness:
    cloudmap, kube, events = FakeCloudMap(SERVICE), FakeKube(), []
    controller = PodSyncController(
        settings=load_settings({"CONFIG_REFRESH_QUEUE_URL": "http://127.0.0.1/q", "AWS_REGION": "us-east-1"}),
        cloudmap=cloudmap,
        kube=kube,
        events=lambda body, reason, message: events.append((reason, message)),
        status_debounce=0.0,
    )
    controller.route_event(None, ROUTE)
    return Harness(controller, cloudmap, kube, events)


async def test_pod_events_register_mark_unhealthy_and_deregister(harness: Harness) -> None:
    await harness.controller.pod_event("ADDED", pod("orders-0"))
    assert harness.cloudmap.instances["team-a.orders-0"].healthy is True
    await harness.controller.pod_event("MODIFIED", pod("orders-0", ready=False))
    assert harness.cloudmap.instances["team-a.orders-0"].healthy is False
    await harness.controller.pod_event("DELETED", pod("orders-0", ready=False))
    assert harness.cloudmap.instances == {}


async def test_an_unchanged_pod_costs_no_cloud_map_call(harness: Harness) -> None:
    await harness.controller.pod_event("ADDED", pod("orders-0"))
    calls = list(harness.cloudmap.calls)
    await harness.controller.pod_event("MODIFIED", pod("orders-0"))
    assert harness.cloudmap.calls == calls


async def test_only_selected_pods_concern_pod_sync(harness: Harness) -> None:
    assert harness.controller.concerns(pod("orders-0"))
    assert not harness.controller.concerns(pod("billing-0", app="billing"))
    await harness.controller.pod_event("ADDED", pod("orders-0"))
    # After a relabel it no longer matches, but it was synced: its events still concern podSync.
    assert harness.controller.concerns(pod("orders-0", app="billing"))
    await harness.controller.pod_event("MODIFIED", pod("orders-0", app="billing"))
    assert harness.cloudmap.instances == {}
    assert not harness.controller.concerns(pod("orders-0", app="billing"))


async def test_reconcile_repairs_drift_and_writes_counts(harness: Harness) -> None:
    harness.kube.pods = [pod("orders-0"), pod("orders-1", ready=False)]
    harness.cloudmap.instances["stray"] = ActualInstance(
        "stray", {**MANAGED, "k8s-namespace": "team-a"}, healthy=True
    )
    harness.cloudmap.instances["foreign"] = ActualInstance("foreign", {"owner": "else"}, healthy=True)
    # Managed, but no namespace says whose: no route owns it, so none touches it.
    harness.cloudmap.instances["unowned"] = ActualInstance("unowned", MANAGED, healthy=True)
    await harness.controller.reconcile(("team-a", "orders"))
    assert set(harness.cloudmap.instances) == {"team-a.orders-0", "foreign", "unowned"}
    status = harness.last_status()
    assert (status["registered"], status["healthy"]) == (1, 1)
    assert status["conditions"][0]["status"] == "True"


async def test_a_missing_service_becomes_the_condition_and_one_event(harness: Harness) -> None:
    harness.cloudmap.missing_service = True
    await harness.controller.reconcile(("team-a", "orders"))
    await harness.controller.reconcile(("team-a", "orders"))
    condition = harness.last_status()["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "ServiceNotFound")
    assert harness.events == [("ServiceNotFound", 'Cloud Map service "config-service" does not exist')]

    harness.cloudmap.missing_service = False
    await harness.controller.reconcile(("team-a", "orders"))
    assert harness.last_status()["conditions"][0]["status"] == "True"


async def test_an_invalid_pod_sync_is_reported_not_raised(harness: Harness) -> None:
    broken = {**ROUTE, "spec": {**ROUTE["spec"], "podSync": {"selector": {"matchLabels": {}}, "port": 1}}}
    harness.controller.route_event("MODIFIED", broken)
    await harness.controller.reconcile(("team-a", "orders"))  # no route to reconcile: nothing happens
    await harness.controller.pod_event("ADDED", pod("orders-0"))
    assert harness.cloudmap.instances == {}
    await asyncio.sleep(0.05)  # the debounced status flush (0 s in this harness) runs
    condition = harness.last_status()["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "InvalidPodSync")
    assert "matchLabels" in condition["message"]


async def test_an_event_during_a_reconcile_wins_over_the_reconciles_stale_listing(harness: Harness) -> None:
    await harness.controller.pod_event("ADDED", pod("orders-0"))
    stale_listing = [pod("orders-0")]

    async def list_pods_while_the_pod_turns_not_ready(namespace: str, match_labels: Mapping[str, str]) -> Any:
        await harness.controller.pod_event("MODIFIED", pod("orders-0", ready=False))
        return stale_listing

    harness.kube.list_pods = list_pods_while_the_pod_turns_not_ready  # type: ignore[method-assign]
    await harness.controller.reconcile(("team-a", "orders"))
    assert harness.cloudmap.instances["team-a.orders-0"].healthy is False
    assert harness.last_status()["healthy"] == 0


async def test_the_same_pod_name_in_two_namespaces_gets_two_instances_and_neither_route_removes_the_other(
    harness: Harness,
) -> None:
    harness.controller.route_event(None, route_in("team-b"))
    harness.kube.pods = [pod("svc-0", app="orders"), pod("svc-0", namespace="team-b", ip="127.0.0.22")]
    for candidate in harness.kube.pods:
        await harness.controller.pod_event("ADDED", candidate)
    ips = {i: a.attributes["AWS_INSTANCE_IPV4"] for i, a in harness.cloudmap.instances.items()}
    assert ips == {"team-a.svc-0": "127.0.0.21", "team-b.svc-0": "127.0.0.22"}

    calls = list(harness.cloudmap.calls)
    for namespace in ("team-a", "team-b", "team-a"):
        await harness.controller.reconcile((namespace, "orders"))
    assert harness.cloudmap.calls == calls  # nothing to repair: no flapping between the two routes
    assert harness.controller.counts(("team-a", "orders")) == (1, 1)
    assert harness.controller.counts(("team-b", "orders")) == (1, 1)

    await harness.controller.pod_event("DELETED", pod("svc-0", namespace="team-b", ip="127.0.0.22"))
    assert set(harness.cloudmap.instances) == {"team-a.svc-0"}


async def test_a_route_alone_in_this_operator_leaves_another_namespaces_instances_alone(
    harness: Harness,
) -> None:
    """Another operator release, watching team-b, registered team-b's pods in the same service."""
    theirs = {**MANAGED, "k8s-namespace": "team-b", "k8s-pod": "svc-0"}
    harness.cloudmap.instances["team-b.svc-0"] = ActualInstance("team-b.svc-0", theirs, healthy=True)
    harness.cloudmap.instances["svc-5"] = ActualInstance("svc-5", {**theirs, "k8s-pod": "svc-5"}, True)
    harness.kube.pods = [pod("orders-0")]
    await harness.controller.reconcile(("team-a", "orders"))
    assert set(harness.cloudmap.instances) == {"team-a.orders-0", "team-b.svc-0", "svc-5"}


async def test_a_pod_event_moves_an_instance_registered_under_the_bare_pod_name(harness: Harness) -> None:
    old = {**MANAGED, "k8s-namespace": "team-a", "k8s-pod": "orders-0", "AWS_INSTANCE_IPV4": "127.0.0.21"}
    harness.cloudmap.instances["orders-0"] = ActualInstance("orders-0", old, healthy=True)
    await harness.controller.pod_event("ADDED", pod("orders-0"))
    assert set(harness.cloudmap.instances) == {"team-a.orders-0"}
    assert harness.cloudmap.calls == ["register team-a.orders-0", "deregister orders-0"]


async def test_a_reconcile_moves_legacy_instances_and_removes_those_whose_pod_is_gone(
    harness: Harness,
) -> None:
    old = {**MANAGED, "k8s-namespace": "team-a"}
    for name, healthy in (("orders-0", True), ("orders-1", False), ("orders-9", True)):
        harness.cloudmap.instances[name] = ActualInstance(name, {**old, "k8s-pod": name}, healthy)
    harness.kube.pods = [pod("orders-0"), pod("orders-1", ready=False)]
    await harness.controller.reconcile(("team-a", "orders"))
    held = {i: a.healthy for i, a in harness.cloudmap.instances.items()}
    assert held == {"team-a.orders-0": True, "team-a.orders-1": False}
    calls = harness.cloudmap.calls
    assert calls.index("register team-a.orders-0") < calls.index("deregister orders-0")
    assert calls.index("register team-a.orders-1") < calls.index("deregister orders-1")
    status = harness.last_status()
    assert (status["registered"], status["healthy"]) == (2, 1)


async def test_a_deleted_route_deregisters_its_pods_old_and_new_instances_only(harness: Harness) -> None:
    harness.controller.route_event(None, route_in("team-b"))
    await harness.controller.pod_event("ADDED", pod("svc-0"))
    await harness.controller.pod_event("ADDED", pod("svc-0", namespace="team-b", ip="127.0.0.22"))
    harness.controller.route_event("DELETED", route_in("team-b"))
    await asyncio.sleep(0.05)  # the release runs in the background
    assert set(harness.cloudmap.instances) == {"team-a.svc-0"}


async def test_a_change_during_a_status_write_is_written_after_it(harness: Harness) -> None:
    """The lost wake-up behind INSTANCES 0 with 20 pods registered: pods registered while the first status
    write is in flight must reach the status without waiting for a reconcile."""
    release, writing = asyncio.Event(), asyncio.Event()
    written: list[tuple[int, int]] = []

    async def slow_apply(namespace: str, name: str, body: Mapping[str, Any]) -> None:
        writing.set()
        await release.wait()
        written.append((body["status"]["registered"], body["status"]["healthy"]))

    harness.kube.apply_route_status = slow_apply  # type: ignore[method-assign]
    await harness.controller.pod_event("ADDED", pod("orders-0", ip="127.0.0.20"))
    await asyncio.wait_for(writing.wait(), timeout=10)  # the first write (1 pod) is in flight
    for index in range(1, 5):
        await harness.controller.pod_event("ADDED", pod(f"orders-{index}", ip=f"127.0.0.{20 + index}"))
    release.set()
    for _ in range(200):
        if written and written[-1] == (5, 5):
            break
        await asyncio.sleep(0.01)
    assert written[0] == (1, 1)
    assert written[-1] == (5, 5)
