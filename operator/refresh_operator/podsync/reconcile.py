"""Desired vs. actual: the plan (pure) and its execution against Cloud Map.

The same planner serves the fast path (one pod event, compared with what podSync last wrote) and the
periodic reconcile (every selected pod, compared with a fresh ListInstances), so the two can only differ
in what they look at, never in what they decide. A route plans only for instances its namespace owns
(``managed-by`` = this operator and ``k8s-namespace`` = the route's namespace): instances without the
marker belong to someone else, and another namespace's belong to its own routes (or to another operator
release watching that namespace, which this one cannot see).

Migration: an owned instance whose id is not the one its ``k8s-namespace``/``k8s-pod`` give (podSync
used to register under the bare pod name) is *legacy*. Its pod's instance is registered under the new id
first and the legacy one deregistered only once that registration succeeded (``Deregister.successor``),
so a Ready pod is never missing from discovery; a legacy instance whose pod is gone is deregistered.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from refresh_operator.cloudmap.client import Instance, ServiceRef
from refresh_operator.podsync.model import (
    PodIntent,
    comparable,
    expected_instance_id,
    is_managed,
    is_owned_by,
)


class InstanceWriter(Protocol):
    """The Cloud Map writes `execute` makes (``cloudmap.Registrar``; an in-memory one in the unit tests)."""

    async def register(
        self,
        service_id: str,
        instance_id: str,
        attributes: Mapping[str, str],
        *,
        healthy: bool,
        replace: bool = False,
    ) -> None: ...

    async def set_health(self, service_id: str, instance_id: str, healthy: bool) -> None: ...

    async def deregister(self, service_id: str, instance_id: str) -> None: ...


class InstanceRegistry(InstanceWriter, Protocol):
    """All that podSync asks of Cloud Map: the writes, the service lookup and the instance listing."""

    async def resolve_service(self, namespace_name: str, service_name: str) -> ServiceRef: ...

    async def list_instances(self, service_id: str) -> Mapping[str, Instance]: ...


@dataclasses.dataclass(frozen=True)
class ActualInstance(Instance):
    """An instance as Cloud Map holds it, seen by podSync: whose it is, and where a legacy one moves."""

    @classmethod
    def of(cls, instance: Instance) -> ActualInstance:
        if isinstance(instance, ActualInstance):
            return instance
        return cls(instance.instance_id, instance.attributes, instance.healthy)

    @property
    def managed(self) -> bool:
        return is_managed(self.attributes)

    def owned_by(self, namespace: str) -> bool:
        """Whether a route in ``namespace`` may touch this instance."""
        return is_owned_by(self.attributes, namespace)

    @property
    def successor(self) -> str | None:
        """For a legacy instance (registered under an older id scheme), the id it moves to; else None."""
        expected = expected_instance_id(self.attributes)
        return expected if expected is not None and expected != self.instance_id else None


@dataclasses.dataclass(frozen=True)
class Register:
    """Register (or re-register with the same id, which replaces the attributes)."""

    instance_id: str
    attributes: Mapping[str, str]
    healthy: bool
    replace: bool = False


@dataclasses.dataclass(frozen=True)
class SetHealth:
    instance_id: str
    healthy: bool


@dataclasses.dataclass(frozen=True)
class Deregister:
    """Deregister an instance. ``successor``: the id a legacy instance moves to; when the same plan
    registers that id, the deregistration runs only after the registration succeeded."""

    instance_id: str
    successor: str | None = None


Action = Register | SetHealth | Deregister


def plan_pod(
    intent: PodIntent, actual: ActualInstance | None, legacy: Iterable[ActualInstance] = ()
) -> list[Action]:
    """Actions that make Cloud Map hold what one existing pod asks for.

    ``legacy``: instances of this pod under an older id; they are moved to the pod's id (registered
    there first, with the pod's health, then deregistered) or, if the pod cannot be registered, removed.
    """
    old = [
        instance
        for instance in legacy
        if instance.owned_by(intent.namespace) and instance.successor == intent.instance_id
    ]
    moves: list[Action] = [Deregister(instance.instance_id, successor=intent.instance_id) for instance in old]
    if actual is None:
        if intent.attributes is not None and (intent.healthy or old):
            register = Register(intent.instance_id, dict(intent.attributes), healthy=intent.healthy)
            return [register, *moves]
        return moves
    if not actual.owned_by(intent.namespace):
        return []  # the id is held by an instance that is not ours: leave it, and the pod's old one too
    actions: list[Action] = []
    if intent.attributes is not None and comparable(actual.attributes) != dict(intent.attributes):
        actions.append(
            Register(intent.instance_id, dict(intent.attributes), healthy=intent.healthy, replace=True)
        )
    elif actual.healthy != intent.healthy:
        actions.append(SetHealth(intent.instance_id, intent.healthy))
    return [*actions, *moves]


def plan_gone(
    actual: ActualInstance | None, namespace: str, legacy: Iterable[ActualInstance] = ()
) -> list[Action]:
    """Actions for a pod of ``namespace`` that no longer exists (its instance and any legacy one)."""
    gone = [] if actual is None else [actual]
    return [Deregister(instance.instance_id) for instance in [*gone, *legacy] if instance.owned_by(namespace)]


def legacy_of(instances: Iterable[ActualInstance], namespace: str) -> dict[str, list[ActualInstance]]:
    """Legacy instances owned by ``namespace``, grouped by the id each moves to."""
    found: dict[str, list[ActualInstance]] = {}
    for instance in instances:
        successor = instance.successor
        if successor is not None and instance.owned_by(namespace):
            found.setdefault(successor, []).append(instance)
    return found


def plan_route(
    *,
    namespace: str,
    intents: Mapping[str, PodIntent],
    actual: Mapping[str, ActualInstance],
    backed_elsewhere: Iterable[str] = (),
) -> list[Action]:
    """Every action that repairs drift between a route's pods and its service.

    Only instances owned by the route's ``namespace`` are considered. ``backed_elsewhere``: instance ids
    that another podSync route of the same namespace and service backs; they are not orphans even though
    this route's pods do not back them (nor are legacy instances moving to them).
    """
    others = set(backed_elsewhere)
    legacy = legacy_of(actual.values(), namespace)
    actions: list[Action] = []
    for instance_id, intent in sorted(intents.items()):
        actions.extend(plan_pod(intent, actual.get(instance_id), legacy.get(instance_id, ())))
    for instance_id, instance in sorted(actual.items()):
        if instance_id in intents or instance_id in others or not instance.owned_by(namespace):
            continue
        successor = instance.successor
        if successor is not None and (successor in intents or successor in others):
            continue  # being moved to its pod's id above (or by the sibling route that selects the pod)
        actions.append(Deregister(instance_id, successor=successor))
    return actions


@dataclasses.dataclass(frozen=True)
class Outcome:
    action: Action
    error: Exception | None


async def execute(
    writer: InstanceWriter,
    *,
    service_id: str,
    actions: Sequence[Action],
    concurrency: int = 8,
) -> list[Outcome]:
    """Apply every action, at most ``concurrency`` at once; one failure does not stop the others.

    A ``Deregister`` whose ``successor`` this plan registers waits for that registration and is left
    out (no outcome: the instance stays for the next pass) if it failed, so a pod moving to a new id is
    always discoverable under one of them.
    """
    gate = asyncio.Semaphore(concurrency)
    registering = {action.instance_id for action in actions if isinstance(action, Register)}

    def waits(action: Action) -> bool:
        return isinstance(action, Deregister) and action.successor in registering

    async def run(action: Action) -> Outcome:
        async with gate:
            try:
                if isinstance(action, Register):
                    await writer.register(
                        service_id,
                        action.instance_id,
                        action.attributes,
                        healthy=action.healthy,
                        replace=action.replace,
                    )
                elif isinstance(action, SetHealth):
                    await writer.set_health(service_id, action.instance_id, action.healthy)
                else:
                    await writer.deregister(service_id, action.instance_id)
            except Exception as error:
                return Outcome(action, error)
            return Outcome(action, None)

    first = list(await asyncio.gather(*(run(action) for action in actions if not waits(action))))
    registered = {
        outcome.action.instance_id
        for outcome in first
        if isinstance(outcome.action, Register) and outcome.error is None
    }
    later = [
        action
        for action in actions
        if isinstance(action, Deregister) and waits(action) and action.successor in registered
    ]
    return first + list(await asyncio.gather(*(run(action) for action in later)))
