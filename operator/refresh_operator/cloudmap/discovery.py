"""Discovery: the HEALTHY instances of a service whose attributes match a route's query parameters.

``DiscoverInstances`` is Cloud Map's data-plane call made for exactly this (filters by attribute and by
health, high request quota), but it has no pagination: it returns at most ``MaxResults`` instances (100
when not given, 1,000 at most), so it is asked for 1,000. When a reply is full, this module switches to
the control-plane listing (``ListInstances``, paginated) filtered here by the same attributes, with
health from ``GetInstancesHealthStatus`` (the two listings run side by side), so a larger fleet is not
silently cut. With ``MaxResults`` 100, a fleet of exactly 100 took the listing's six sequential calls
on every rollout (issue 20's profile: about 45 ms of the 100-instance whole path on the local stack).

A full reply is not always a cut one: the service's ``InstanceCount`` (``GetService``, found on the way
to the listing) says how many instances it holds. When that is no more than a reply holds, every
matching healthy instance is in the reply, and the listing (ten pages of instances and ten of health
per 1,000 instances, about 175 ms of the 1,000-instance scale row on the local stack) is skipped. Like
the listing, the count may not yet reflect a registration still pending. The service's id is remembered
per client after the first look-up (namespaces, then services, then the service: three calls or more,
about 10 ms at 1,000 instances on the local stack): the next full reply asks only GetService by that id,
and a service deleted or recreated since (ServiceNotFound, another name or namespace) is looked up again.

The client is the operator's (its own retry configuration applies); every call runs in a worker thread.
It must be built with ``Config(inject_host_prefix=False)`` against a local endpoint (the real API
prefixes the host with ``data-``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from refresh_operator.cloudmap.client import (
    Call,
    Instance,
    describe,
    error_code,
    find_service,
    health_statuses,
    list_attributes,
    plain_call,
)

log = logging.getLogger(__name__)

DISCOVER_MAX_RESULTS = 1000
"""The most DiscoverInstances returns in one reply (the API's ceiling for MaxResults; it has no next
page)."""


class DiscoveryError(Exception):
    """Cloud Map could not say which instances to refresh; the message names the service and the cause."""


KNOWN_SERVICES_MAX = 4096
"""Services whose ids one client remembers (one per Cloud Map service the routes discover in)."""

_known_services: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], tuple[str, str]]] = (
    weakref.WeakKeyDictionary()
)
"""Per client (they live as long as the operator): (namespace, service) names → (service id, namespace id)."""


async def healthy_instances(
    client: Any, *, namespace: str, service: str, query_parameters: Mapping[str, str]
) -> list[Instance]:
    """The HEALTHY instances of ``namespace``/``service`` whose attributes match every query parameter,
    in Cloud Map's order. Raises ``DiscoveryError`` when Cloud Map fails."""
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
        raise DiscoveryError(f"DiscoverInstances failed for {where}: {describe(exc)}") from exc
    found = [
        Instance(item["InstanceId"], item.get("Attributes", {}), True) for item in reply.get("Instances", [])
    ]
    if len(found) < DISCOVER_MAX_RESULTS:
        return found
    try:
        call = plain_call(client)
        found_service = await _service(client, call, namespace, service)
        count = found_service.get("InstanceCount")
        if isinstance(count, int) and count <= DISCOVER_MAX_RESULTS:
            return found  # the service holds no more instances than the reply: none was cut
        log.info("%s has %d+ healthy instances; listing them all", where, DISCOVER_MAX_RESULTS)
        return await _list_healthy(call, str(found_service["Id"]), query_parameters)
    except (ClientError, BotoCoreError) as exc:
        raise DiscoveryError(f"listing instances failed for {where}: {describe(exc)}") from exc


async def _service(client: Any, call: Call, namespace: str, service: str) -> dict[str, Any]:
    """GetService's ``Service`` for the names: by the id remembered for this client (one call), else by
    the full look-up, whose answer is then remembered."""
    known = _known_services.setdefault(client, {})
    remembered = known.get((namespace, service))
    if remembered is not None:
        service_id, namespace_id = remembered
        try:
            current: dict[str, Any] = (await call("GetService", Id=service_id))["Service"]
        except ClientError as exc:
            if error_code(exc) != "ServiceNotFound":
                raise
        else:
            if current.get("Name") == service and current.get("NamespaceId") == namespace_id:
                return current
        del known[(namespace, service)]
    lookup = await find_service(call, namespace, service)
    if not lookup.namespace_ids:
        raise DiscoveryError(f"Cloud Map namespace {namespace} not found")
    if lookup.service is None:
        raise DiscoveryError(f"Cloud Map service {service} not found in namespace {namespace}")
    if len(known) >= KNOWN_SERVICES_MAX:
        known.pop(next(iter(known)))
    known[(namespace, service)] = (str(lookup.service["Id"]), str(lookup.service.get("NamespaceId", "")))
    return lookup.service


async def _list_healthy(call: Call, service_id: str, query_parameters: Mapping[str, str]) -> list[Instance]:
    """The full listing, filtered by attributes and health here."""
    listed, statuses = await asyncio.gather(
        list_attributes(call, service_id),
        health_statuses(call, service_id),
        return_exceptions=True,
    )
    if isinstance(listed, BaseException):
        raise listed
    matching = {
        instance_id: attributes
        for instance_id, attributes in listed.items()
        if all(attributes.get(key) == value for key, value in query_parameters.items())
    }
    health: dict[str, str] | None
    if isinstance(statuses, BaseException):
        if not isinstance(statuses, ClientError) or error_code(statuses) != "CustomHealthNotFound":
            raise statuses
        health = None  # no health check: all count as healthy, as DiscoverInstances treats them
    else:
        health = statuses
    return [
        Instance(instance_id, attributes, True)
        for instance_id, attributes in matching.items()
        if health is None or health.get(instance_id) == "HEALTHY"
    ]
