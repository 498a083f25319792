"""Deploying onto started parts: instances registered in Cloud Map, routes applied, the operator started.

`deploy()` is the step every stack shares: `Stack.deploy` (devstack.stack.builder) builds on it for a
fleet of config-service processes, and the benchmarks call it for thousands of fake endpoints
(devstack.services.endpoints) across as many routes. Anything with an instance id, a host and a refresh
port (and optionally Cloud Map `attributes`) can be registered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.stack import kube
from devstack.stack.operator import OperatorProcess


class Registrable(Protocol):
    """What Cloud Map registers for an instance (a ServiceFleet's instances, fake endpoints)."""

    @property
    def instance_id(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def refresh_port(self) -> int: ...


def register_all(local_aws: LocalAws, instances: Iterable[Registrable], *, workers: int = 8) -> int:
    """Register every instance (IPv4 = host, port = refresh port, plus its `attributes` if it has some) in
    the stack's Cloud Map service; `workers` calls in parallel. Returns how many were registered."""

    def one(instance: Registrable) -> None:
        attributes: Mapping[str, str] = getattr(instance, "attributes", None) or {}
        local_aws.register_instance(
            instance.instance_id, instance.host, instance.refresh_port, attributes=dict(attributes)
        )

    items = list(instances)
    if len(items) <= workers:
        for item in items:
            one(item)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, items))
    return len(items)


def deploy(
    *,
    control_plane: ControlPlane,
    local_aws: LocalAws,
    namespace: str,
    instances: Iterable[Registrable],
    routes: Sequence[dict[str, Any]],
    operator: OperatorProcess,
    timeout: float = 90.0,
) -> list[str]:
    """Register `instances` in Cloud Map, apply `routes`, start `operator` (not yet started) and wait up
    to `timeout` s until it has indexed them; returns the routes' names. `Stack.deploy` builds on it; the
    benchmarks use it directly for thousands of fake endpoints (devstack.services.endpoints)."""
    register_all(local_aws, instances)
    kube.apply_all(control_plane, namespace, routes)
    operator.start()
    operator.wait_ready(timeout)
    return [body["metadata"]["name"] for body in routes]
