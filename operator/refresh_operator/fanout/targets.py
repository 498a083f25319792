"""What a fan-out works on and what it reports: a target instance and the outcome of refreshing it.

These are plain frozen values so the operator's handlers can keep them in status, compare them across a
restart (``already_done``) and hand them between tasks without copying or locking. ``discover_instances``
turns the HEALTHY Cloud Map instances of a route (``refresh_operator.cloudmap.discovery``) into targets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from refresh_operator.cloudmap.client import IPV4_ATTRIBUTE, PORT_ATTRIBUTE, Instance
from refresh_operator.cloudmap.discovery import healthy_instances
from refresh_operator.cloudmap.prefetch import HealthyInstances

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """One instance to refresh, as Cloud Map (or a pod) describes it."""

    instance_id: str
    address: str
    """``host:port`` of the instance's RefreshService."""
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)


class Result(StrEnum):
    """The outcome of one target, spelled as in ``status.instances[].result``."""

    APPLIED = "Applied"
    STALE = "Stale"
    REJECTED = "Rejected"
    FAILED = "Failed"
    GONE = "Gone"
    """Every call failed, and then Cloud Map no longer listed the instance as a healthy member of the
    route's service (deregistered or unhealthy): it left during the rollout. Not a failure."""

    @property
    def acknowledged(self) -> bool:
        """True when the instance answered the refresh (it never needs to be called again)."""
        return self not in (Result.FAILED, Result.GONE)


@dataclass(frozen=True)
class TargetOutcome:
    """How one target ended in one rollout.

    ``version`` is the version the instance reports holding after the call (0 when it never answered);
    ``attempts`` counts calls tried, including those refused at once by an open circuit breaker;
    ``error`` names the gRPC status code (or the local reason) of the last failure and never holds a value;
    ``acknowledged_at`` is the epoch time of the instance's answer, None when it never answered.
    """

    target: Target
    result: Result
    version: int
    attempts: int
    error: str | None
    acknowledged_at: float | None


async def discover_instances(
    client: Any,
    *,
    namespace: str,
    service: str,
    query_parameters: Mapping[str, str],
    default_port: int | None = None,
    source: HealthyInstances = healthy_instances,
) -> list[Target]:
    """The HEALTHY instances of ``namespace``/``service`` whose attributes match every query parameter,
    as targets sorted by instance id. An instance without ``AWS_INSTANCE_PORT`` gets ``default_port``; one
    without an address is skipped (and logged). Raises ``cloudmap.DiscoveryError`` when Cloud Map fails.
    ``source`` asks Cloud Map; the rollouts pass their ``DiscoveryPrefetch`` (cloudmap.prefetch)."""
    found = await source(client, namespace=namespace, service=service, query_parameters=query_parameters)
    return targets_of(found, default_port)


def targets_of(instances: Iterable[Instance], default_port: int | None) -> list[Target]:
    """One target per instance with a usable address, sorted by instance id."""
    found: dict[str, Target] = {}
    for instance in instances:
        target = _target(instance.instance_id, instance.attributes, default_port)
        if target is not None:
            found.setdefault(target.instance_id, target)
    return sorted(found.values(), key=lambda target: target.instance_id)


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
