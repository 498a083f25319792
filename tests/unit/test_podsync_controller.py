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

from refresh_operator.podsync.cloudmap import CloudMapError, InstanceNotFound, ServiceRef
from refresh_operator.podsync.config import PodSyncSettings
from refresh_operator.podsync.controller import PodSyncController
from refresh_operator.podsync.reconcile import ActualInstance

SERVICE = ServiceRef("srv-1", "ns-1", "config-refresh", "config-service")


class FakeCloudMap:
    def __init__(self) -> None:
        self.instances: dict[str, ActualInstance] = {}
        self.missing_service = False
        self.calls: list[str] = []

    async def resolve_service(self, namespace_name: str, service_name: str) -> ServiceRef:
        if self.missing_service:
            raise CloudMapError("ServiceNotFound", f'Cloud Map service "{service_name}" does not exist')
        return SERVICE

    async def list_instances(self, service_id: str) -> dict[str, ActualInstance]:
        return dict(self.instances)

    async def register(
        self,
        service_id: str,
        instance_id: str,
        attributes: Mapping[str, str],
        *,
        healthy: bool,
        replace: bool = False,
    ) -> None:
        self.calls.append(f"register {instance_id}")
        self.instances[instance_id] = ActualInstance(instance_id, dict(attributes), healthy)

    async def set_health(self, service_id: str, instance_id: str, healthy: bool) -> None:
        self.calls.append(f"health {instance_id} {healthy}")
        if instance_id not in self.instances:
            raise InstanceNotFound("InstanceNotFound", instance_id)
        self.instances[instance_id] = dataclasses.replace(self.instances[instance_id], healthy=healthy)

    async def deregister(self, service_id: str, instance_id: str) -> None:
        self.calls.append(f"deregister {instance_id}")
        self.instances.pop(instance_id, None)


class FakeKube:
    def __init__(self) -> None:
        self.pods: list[dict[str, Any]] = []
        self.applied: list[dict[str, Any]] = []

    async def list_pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return list(self.pods)

    async def apply_route_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        self.applied.append(dict(body))


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


def pod(name: str, *, ready: bool = True, app: str = "orders") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team-a", "name": name, "labels": {"app": app}},
        "status": {"podIP": "127.0.0.21", "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


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
    cloudmap, kube, events = FakeCloudMap(), FakeKube(), []
    controller = PodSyncController(
        settings=PodSyncSettings(),
        cloudmap=cloudmap,
        kube=kube,
        events=lambda body, reason, message: events.append((reason, message)),
        status_debounce=0.0,
    )
    controller.route_event(None, ROUTE)
    return Harness(controller, cloudmap, kube, events)


async def test_pod_events_register_mark_unhealthy_and_deregister(harness: Harness) -> None:
    await harness.controller.pod_event("ADDED", pod("orders-0"))
    assert harness.cloudmap.instances["orders-0"].healthy is True
    await harness.controller.pod_event("MODIFIED", pod("orders-0", ready=False))
    assert harness.cloudmap.instances["orders-0"].healthy is False
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
        "stray", {"managed-by": "config-refresh-operator"}, healthy=True
    )
    harness.cloudmap.instances["foreign"] = ActualInstance("foreign", {"owner": "else"}, healthy=True)
    await harness.controller.reconcile(("team-a", "orders"))
    assert set(harness.cloudmap.instances) == {"orders-0", "foreign"}
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
    assert harness.cloudmap.instances["orders-0"].healthy is False
    assert harness.last_status()["healthy"] == 0
