"""What Cloud Map should hold for a pod: pure functions, no I/O.

Everything podSync decides is derived here from two plain dicts (the ConfigRoute and the Pod as the API
server returns them), so the rules can be tested as tables and the event path and the periodic reconcile
cannot disagree about them.

Rules (issue 6): a pod with an IP and ``Ready=True`` is registered HEALTHY under its name; a pod that is
not Ready, or is terminating (``deletionTimestamp`` set), is UNHEALTHY if registered and not registered
otherwise; a pod that is gone is deregistered. Attributes: ``AWS_INSTANCE_IPV4``, ``AWS_INSTANCE_PORT``,
each configured label present on the pod, ``k8s-namespace``, ``k8s-pod`` and ``managed-by``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from refresh_operator.podsync.config import MANAGED_BY

ATTR_IPV4 = "AWS_INSTANCE_IPV4"
ATTR_PORT = "AWS_INSTANCE_PORT"
ATTR_INIT_HEALTH = "AWS_INIT_HEALTH_STATUS"
ATTR_NAMESPACE = "k8s-namespace"
ATTR_POD = "k8s-pod"
ATTR_MANAGED_BY = "managed-by"
RESERVED_ATTRIBUTES = frozenset(
    {ATTR_IPV4, ATTR_PORT, ATTR_INIT_HEALTH, ATTR_NAMESPACE, ATTR_POD, ATTR_MANAGED_BY}
)
# Attributes that say something about the instance; AWS_INIT_HEALTH_STATUS is only a registration hint.
_COMPARED_EXCLUDED = frozenset({ATTR_INIT_HEALTH})


class InvalidPodSync(ValueError):
    """A ConfigRoute's podSync (or its Cloud Map target) cannot be used as written."""


@dataclasses.dataclass(frozen=True)
class RouteSync:
    """The parts of a ConfigRoute that podSync acts on."""

    namespace: str
    name: str
    generation: int
    cloudmap_namespace: str
    cloudmap_service: str
    match_labels: Mapping[str, str]
    port: int
    attributes_from_labels: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def target(self) -> tuple[str, str]:
        """The Cloud Map (namespace, service) this route keeps in step."""
        return (self.cloudmap_namespace, self.cloudmap_service)


@dataclasses.dataclass(frozen=True)
class PodIntent:
    """What a pod asks of Cloud Map.

    ``attributes`` is None when the pod cannot be registered (no IP yet); ``healthy`` is True only for a
    Ready pod that is not terminating.
    """

    instance_id: str
    attributes: Mapping[str, str] | None
    healthy: bool


def route_sync_from_body(body: Mapping[str, Any]) -> RouteSync | None:
    """The podSync part of a ConfigRoute, or None if the route has no ``spec.podSync``.

    Raises InvalidPodSync with a message a person can act on if podSync is present but unusable.
    """
    spec = body.get("spec") or {}
    pod_sync = spec.get("podSync")
    if not pod_sync:
        return None
    meta = body.get("metadata") or {}
    cloud_map = (spec.get("discovery") or {}).get("cloudMap") or {}
    namespace_name = cloud_map.get("namespace")
    service_name = cloud_map.get("service")
    if not namespace_name or not service_name:
        raise InvalidPodSync(
            "spec.podSync needs spec.discovery.cloudMap.namespace and .service: set them to the Cloud Map "
            "namespace and service the pods should be registered in"
        )
    selector = pod_sync.get("selector") or {}
    match_labels = dict(selector.get("matchLabels") or {})
    if not match_labels:
        raise InvalidPodSync(
            "spec.podSync.selector.matchLabels is empty: it would select every pod in the namespace; "
            "name the labels of the pods to register"
        )
    port = pod_sync.get("port")
    if port is None:
        port = (spec.get("refresh") or {}).get("port")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidPodSync(f"spec.podSync.port must be a port number (1-65535), got {port!r}")
    labels = tuple(str(label) for label in pod_sync.get("attributesFromLabels") or ())
    clashing = sorted(set(labels) & RESERVED_ATTRIBUTES)
    if clashing:
        raise InvalidPodSync(f"spec.podSync.attributesFromLabels may not name reserved attributes {clashing}")
    return RouteSync(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        generation=int(meta.get("generation") or 0),
        cloudmap_namespace=str(namespace_name),
        cloudmap_service=str(service_name),
        match_labels=match_labels,
        port=port,
        attributes_from_labels=labels,
    )


def selects(route: RouteSync, pod: Mapping[str, Any]) -> bool:
    """Whether the route's selector picks this pod (same namespace, every matchLabel equal)."""
    meta = pod.get("metadata") or {}
    if meta.get("namespace") != route.namespace:
        return False
    labels = meta.get("labels") or {}
    return all(labels.get(key) == value for key, value in route.match_labels.items())


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's Ready condition is True."""
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_is_terminating(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def desired_attributes(route: RouteSync, pod: Mapping[str, Any]) -> dict[str, str] | None:
    """The attributes the pod's instance should carry, or None when the pod has no IP."""
    meta = pod.get("metadata") or {}
    pod_ip = (pod.get("status") or {}).get("podIP")
    if not pod_ip:
        return None
    labels = meta.get("labels") or {}
    attributes = {key: str(labels[key]) for key in route.attributes_from_labels if key in labels}
    attributes.update(
        {
            ATTR_IPV4: str(pod_ip),
            ATTR_PORT: str(route.port),
            ATTR_NAMESPACE: str(meta.get("namespace", "")),
            ATTR_POD: str(meta.get("name", "")),
            ATTR_MANAGED_BY: MANAGED_BY,
        }
    )
    return attributes


def pod_intent(route: RouteSync, pod: Mapping[str, Any]) -> PodIntent:
    """What Cloud Map should hold for a pod the route selects (and that still exists)."""
    return PodIntent(
        instance_id=str((pod.get("metadata") or {}).get("name", "")),
        attributes=desired_attributes(route, pod),
        healthy=pod_is_ready(pod) and not pod_is_terminating(pod),
    )


def is_managed(attributes: Mapping[str, str]) -> bool:
    """Whether an instance was registered by this operator (the only ones podSync may touch)."""
    return attributes.get(ATTR_MANAGED_BY) == MANAGED_BY


def comparable(attributes: Mapping[str, str]) -> dict[str, str]:
    """Attributes as compared for drift: registration hints left out."""
    return {k: v for k, v in attributes.items() if k not in _COMPARED_EXCLUDED}
