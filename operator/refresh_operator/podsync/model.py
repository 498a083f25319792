"""What Cloud Map should hold for a pod: pure functions, no I/O.

Everything podSync decides is derived here from two plain dicts (the ConfigRoute and the Pod as the API
server returns them), so the rules can be tested as tables and the event path and the periodic reconcile
cannot disagree about them.

Rules (issue 6): a pod with an IP and ``Ready=True`` is registered HEALTHY; a pod that is not Ready, or is
terminating (``deletionTimestamp`` set), is UNHEALTHY if registered and not registered otherwise; a pod
that is gone is deregistered. Attributes: ``AWS_INSTANCE_IPV4``, ``AWS_INSTANCE_PORT``, each configured
label present on the pod, ``k8s-namespace``, ``k8s-pod`` and ``managed-by``.

Instance ids are ``<namespace>.<pod>``, not the pod name: one Cloud Map service is often shared by the
same workload in several namespaces (a multi-tenant fleet), where ``svc-0`` exists once per namespace.
A name that does not fit Cloud Map's InstanceId (64 characters of ``[0-9a-zA-Z_/:.@-]``) is cut and gets
``_`` plus a hash of the full name; Kubernetes names never contain ``_``, so the two forms cannot meet.
An instance belongs to a route's namespace only if it carries ``managed-by`` and that ``k8s-namespace``:
podSync never touches anything else, whoever else shares the service.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from refresh_operator.cloudmap.client import INIT_HEALTH_ATTRIBUTE, IPV4_ATTRIBUTE, PORT_ATTRIBUTE

MANAGED_BY = "config-refresh-operator"
FIELD_MANAGER = "config-refresh-podsync"

ATTR_IPV4 = IPV4_ATTRIBUTE
ATTR_PORT = PORT_ATTRIBUTE
ATTR_INIT_HEALTH = INIT_HEALTH_ATTRIBUTE
ATTR_NAMESPACE = "k8s-namespace"
ATTR_POD = "k8s-pod"
ATTR_MANAGED_BY = "managed-by"
RESERVED_ATTRIBUTES = frozenset(
    {ATTR_IPV4, ATTR_PORT, ATTR_INIT_HEALTH, ATTR_NAMESPACE, ATTR_POD, ATTR_MANAGED_BY}
)
# Attributes that say something about the instance; AWS_INIT_HEALTH_STATUS is only a registration hint.
_COMPARED_EXCLUDED = frozenset({ATTR_INIT_HEALTH})
# Cloud Map's InstanceId: at most 64 characters matching ^[0-9a-zA-Z_/:.@-]+$ (RegisterInstance API).
INSTANCE_ID_MAX = 64
_INSTANCE_ID_OK = re.compile(r"[0-9a-zA-Z/:.@-]+")  # "_" left out: it marks the hashed form
_INSTANCE_ID_BAD = re.compile(r"[^0-9a-zA-Z/:.@-]")
_HASH_CHARS = 12


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
    namespace: str
    """The pod's Kubernetes namespace: the only namespace whose instances the pod's route may touch."""


def instance_id_for(namespace: str, pod: str) -> str:
    """The Cloud Map instance id of a pod: unique per (namespace, pod), valid for Cloud Map, readable.

    ``<namespace>.<pod>`` when it fits (a namespace has no ``.``, so the first dot splits it). Otherwise
    its first 51 characters (anything Cloud Map refuses replaced by ``-``), ``_`` and 12 hex characters of
    the SHA-256 of ``<namespace>/<pod>``. The readable form never contains ``_``, the hashed form always
    does: a long name cannot take a short one's id.
    """
    readable = f"{namespace}.{pod}"
    if len(readable) <= INSTANCE_ID_MAX and _INSTANCE_ID_OK.fullmatch(readable):
        return readable
    digest = hashlib.sha256(f"{namespace}/{pod}".encode()).hexdigest()[:_HASH_CHARS]
    kept = _INSTANCE_ID_BAD.sub("-", readable)[: INSTANCE_ID_MAX - _HASH_CHARS - 1]
    return f"{kept}_{digest}"


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
    meta = pod.get("metadata") or {}
    namespace = str(meta.get("namespace", ""))
    return PodIntent(
        instance_id=instance_id_for(namespace, str(meta.get("name", ""))),
        attributes=desired_attributes(route, pod),
        healthy=pod_is_ready(pod) and not pod_is_terminating(pod),
        namespace=namespace,
    )


def is_managed(attributes: Mapping[str, str]) -> bool:
    """Whether an instance was registered by this operator (whichever namespace's route did it)."""
    return attributes.get(ATTR_MANAGED_BY) == MANAGED_BY


def is_owned_by(attributes: Mapping[str, str], namespace: str) -> bool:
    """Whether a route in ``namespace`` may touch the instance: registered by podSync for that namespace."""
    return is_managed(attributes) and attributes.get(ATTR_NAMESPACE) == namespace


def expected_instance_id(attributes: Mapping[str, str]) -> str | None:
    """The id a podSync instance should have from its own ``k8s-namespace``/``k8s-pod`` attributes.

    Differs from the instance's id for one registered under an older scheme (the bare pod name), which
    is then moved to this id. None when the attributes do not say which pod it is.
    """
    namespace, pod = attributes.get(ATTR_NAMESPACE), attributes.get(ATTR_POD)
    if not namespace or not pod:
        return None
    return instance_id_for(namespace, pod)


def comparable(attributes: Mapping[str, str]) -> dict[str, str]:
    """Attributes as compared for drift: registration hints left out."""
    return {k: v for k, v in attributes.items() if k not in _COMPARED_EXCLUDED}
