"""Resolve a route's targets from AWS Cloud Map: the HEALTHY instances matching the scope's attributes.

``DiscoverInstances`` is Cloud Map's data-plane call made for exactly this (filters by attribute and by
health, high request quota), but it returns at most 100 instances and has no pagination. When a reply is
full, this module switches to the control-plane listing (``ListInstances``, paginated) filtered here by
the same attributes, with health from ``GetInstancesHealthStatus``, so a fleet of 1,000 instances is not
silently cut at 100.

boto3 is blocking: every call runs in a worker thread (``asyncio.to_thread``), never on the event loop.
The client must be built with ``Config(inject_host_prefix=False)`` against a local endpoint (the real API
prefixes the host with ``data-``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from refresh_operator.fanout.targets import Target

log = logging.getLogger(__name__)

IPV4_ATTRIBUTE = "AWS_INSTANCE_IPV4"
PORT_ATTRIBUTE = "AWS_INSTANCE_PORT"
DISCOVER_MAX_RESULTS = 100
"""The most DiscoverInstances returns in one reply (the API's limit; it has no next page)."""


class DiscoveryError(Exception):
    """Cloud Map could not say which instances to refresh; the message names the service and the cause."""


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def _target(instance_id: str, attributes: Mapping[str, str], default_port: int | None) -> Target | None:
    host = attributes.get(IPV4_ATTRIBUTE)
    port_text = attributes.get(PORT_ATTRIBUTE)
    if not host:
        log.warning("Cloud Map instance %s has no %s; skipped", instance_id, IPV4_ATTRIBUTE)
        return None
    port: int | None
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        log.warning("Cloud Map instance %s has a bad %s %r; skipped", instance_id, PORT_ATTRIBUTE, port_text)
        return None
    if port is None or not 0 < port < 65536:
        log.warning("Cloud Map instance %s has no usable port; skipped", instance_id)
        return None
    return Target(instance_id=instance_id, address=f"{host}:{port}", attributes=dict(attributes))


def _targets(instances: Iterable[tuple[str, Mapping[str, str]]], default_port: int | None) -> list[Target]:
    found: dict[str, Target] = {}
    for instance_id, attributes in instances:
        target = _target(instance_id, attributes, default_port)
        if target is not None:
            found.setdefault(target.instance_id, target)
    return sorted(found.values(), key=lambda target: target.instance_id)


async def discover_instances(
    client: Any,
    *,
    namespace: str,
    service: str,
    query_parameters: Mapping[str, str],
    default_port: int | None = None,
) -> list[Target]:
    """The HEALTHY instances of ``namespace``/``service`` whose attributes match every query parameter,
    sorted by instance id. An instance without ``AWS_INSTANCE_PORT`` gets ``default_port``; one without an
    address is skipped (and logged). Raises ``DiscoveryError`` when Cloud Map fails."""
    where = f"Cloud Map service {namespace}/{service}"
    try:
        reply = await asyncio.to_thread(
            client.discover_instances,
            NamespaceName=namespace,
            ServiceName=service,
            QueryParameters=dict(query_parameters),
            HealthStatus="HEALTHY",
            MaxResults=DISCOVER_MAX_RESULTS,
        )
    except (ClientError, BotoCoreError) as exc:
        raise DiscoveryError(f"DiscoverInstances failed for {where}: {_describe(exc)}") from exc
    instances = reply.get("Instances", [])
    if len(instances) < DISCOVER_MAX_RESULTS:
        return _targets(
            ((item["InstanceId"], item.get("Attributes", {})) for item in instances), default_port
        )
    log.info("%s has %d+ healthy instances; listing them all", where, DISCOVER_MAX_RESULTS)
    try:
        listed = await asyncio.to_thread(_list_healthy, client, namespace, service, dict(query_parameters))
    except (ClientError, BotoCoreError) as exc:
        raise DiscoveryError(f"listing instances failed for {where}: {_describe(exc)}") from exc
    return _targets(listed, default_port)


def _list_healthy(
    client: Any, namespace: str, service: str, query_parameters: Mapping[str, str]
) -> list[tuple[str, dict[str, str]]]:
    """The full listing (blocking; runs in a worker thread)."""
    service_id = _service_id(client, namespace, service)
    matching: dict[str, dict[str, str]] = {}
    for page in client.get_paginator("list_instances").paginate(ServiceId=service_id):
        for item in page.get("Instances", []):
            attributes = item.get("Attributes", {})
            if all(attributes.get(key) == value for key, value in query_parameters.items()):
                matching[item["Id"]] = attributes
    health = _health(client, service_id, list(matching))
    return [
        (instance_id, attributes)
        for instance_id, attributes in matching.items()
        if health is None or health.get(instance_id) == "HEALTHY"
    ]


def _service_id(client: Any, namespace: str, service: str) -> str:
    namespace_ids = set()
    for page in client.get_paginator("list_namespaces").paginate():
        for item in page.get("Namespaces", []):
            http_name = item.get("Properties", {}).get("HttpProperties", {}).get("HttpName")
            if namespace in (item.get("Name"), http_name):
                namespace_ids.add(item["Id"])
    if not namespace_ids:
        raise DiscoveryError(f"Cloud Map namespace {namespace} not found")
    # ListServices summaries carry no namespace id: filter by it (one id per filter), then confirm with
    # GetService, since not every implementation honours the filter.
    for namespace_id in sorted(namespace_ids):
        pages = client.get_paginator("list_services").paginate(
            Filters=[{"Name": "NAMESPACE_ID", "Values": [namespace_id], "Condition": "EQ"}]
        )
        for page in pages:
            for item in page.get("Services", []):
                if item.get("Name") != service:
                    continue
                described = client.get_service(Id=item["Id"]).get("Service", {})
                if described.get("NamespaceId") == namespace_id:
                    return str(item["Id"])
    raise DiscoveryError(f"Cloud Map service {service} not found in namespace {namespace}")


def _health(client: Any, service_id: str, instance_ids: list[str]) -> dict[str, str] | None:
    """Health by instance id, or None when the service has no health check (then all count as healthy,
    as DiscoverInstances treats them)."""
    statuses: dict[str, str] = {}
    for start in range(0, len(instance_ids), 100):
        chunk = instance_ids[start : start + 100]
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"ServiceId": service_id, "Instances": chunk}
            if token:
                kwargs["NextToken"] = token
            try:
                reply = client.get_instances_health_status(**kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "CustomHealthNotFound":
                    return None
                raise
            statuses.update(reply.get("Status", {}))
            token = reply.get("NextToken")
            if not token:
                break
    return statuses
