"""podSync's rules from a pod and a route to what Cloud Map should hold."""

from __future__ import annotations

from typing import Any

import pytest

from refresh_operator.podsync.model import (
    InvalidPodSync,
    PodIntent,
    RouteSync,
    pod_intent,
    route_sync_from_body,
    selects,
)


def route_body(**pod_sync: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "parameterPrefix": "/config-service/",
        "discovery": {"cloudMap": {"namespace": "config-refresh", "service": "config-service"}},
        "refresh": {"port": 50051},
    }
    if pod_sync:
        spec["podSync"] = pod_sync
    return {"metadata": {"namespace": "team-a", "name": "orders", "generation": 3}, "spec": spec}


def make_route(**overrides: Any) -> RouteSync:
    pod_sync = {
        "selector": {"matchLabels": {"app": "orders"}},
        "port": 50051,
        "attributesFromLabels": ["tenant"],
    }
    pod_sync.update(overrides)
    route = route_sync_from_body(route_body(**pod_sync))
    assert route is not None
    return route


def pod(
    *,
    name: str = "orders-0",
    namespace: str = "team-a",
    labels: dict[str, str] | None = None,
    ip: str | None = "127.0.0.21",
    ready: bool | None = True,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app": "orders", "tenant": "acme"} if labels is None else labels,
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-11-26T10:00:00Z"
    status: dict[str, Any] = {}
    if ip:
        status["podIP"] = ip
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": meta, "status": status}


def test_a_route_without_pod_sync_is_not_synced() -> None:
    assert route_sync_from_body(route_body()) is None


def test_route_sync_reads_target_selector_port_and_labels() -> None:
    route = make_route()
    assert route.key == ("team-a", "orders")
    assert route.target == ("config-refresh", "config-service")
    assert dict(route.match_labels) == {"app": "orders"}
    assert route.port == 50051
    assert route.attributes_from_labels == ("tenant",)
    assert route.generation == 3


@pytest.mark.parametrize(
    ("pod_sync", "complaint"),
    [
        ({"selector": {"matchLabels": {}}, "port": 1}, "matchLabels"),
        ({"selector": {"matchLabels": {"app": "x"}}, "port": 0}, "port"),
        (
            {"selector": {"matchLabels": {"app": "x"}}, "port": 1, "attributesFromLabels": ["managed-by"]},
            "reserved",
        ),
    ],
)
def test_unusable_pod_sync_is_rejected_with_the_field_named(pod_sync: dict[str, Any], complaint: str) -> None:
    with pytest.raises(InvalidPodSync, match=complaint):
        route_sync_from_body(route_body(**pod_sync))


def test_pod_sync_without_a_cloud_map_target_is_rejected() -> None:
    body = route_body(selector={"matchLabels": {"app": "x"}}, port=1)
    body["spec"]["discovery"] = {}
    with pytest.raises(InvalidPodSync, match=r"cloudMap\.namespace"):
        route_sync_from_body(body)


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (pod(), True),
        (pod(labels={"app": "orders"}), True),
        (pod(labels={"app": "billing", "tenant": "acme"}), False),
        (pod(labels={}), False),
        (pod(namespace="team-b"), False),
    ],
)
def test_selector_needs_every_label_and_the_same_namespace(candidate: dict[str, Any], expected: bool) -> None:
    assert selects(make_route(), candidate) is expected


def test_a_ready_pod_with_an_ip_asks_for_a_healthy_instance_with_every_attribute() -> None:
    assert pod_intent(make_route(), pod()) == PodIntent(
        instance_id="team-a.orders-0",
        attributes={
            "AWS_INSTANCE_IPV4": "127.0.0.21",
            "AWS_INSTANCE_PORT": "50051",
            "tenant": "acme",
            "k8s-namespace": "team-a",
            "k8s-pod": "orders-0",
            "managed-by": "config-refresh-operator",
        },
        healthy=True,
        namespace="team-a",
    )


def test_a_label_the_pod_lacks_is_left_out_of_the_attributes() -> None:
    intent = pod_intent(make_route(), pod(labels={"app": "orders"}))
    assert intent.attributes is not None
    assert "tenant" not in intent.attributes


@pytest.mark.parametrize(
    ("candidate", "healthy", "has_attributes"),
    [
        (pod(ready=False), False, True),
        (pod(ready=None), False, True),
        (pod(deleting=True), False, True),
        (pod(ip=None), True, False),
        (pod(ip=None, ready=False), False, False),
    ],
)
def test_not_ready_terminating_or_ip_less_pods(
    candidate: dict[str, Any], healthy: bool, has_attributes: bool
) -> None:
    intent = pod_intent(make_route(), candidate)
    assert intent.healthy is healthy
    assert (intent.attributes is not None) is has_attributes
