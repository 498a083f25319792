"""Desired vs. actual: the plan (pure) and its execution against Cloud Map.

The same planner serves the fast path (one pod event, compared with what podSync last wrote) and the
periodic reconcile (every selected pod, compared with a fresh ListInstances), so the two can only differ
in what they look at, never in what they decide. Instances without ``managed-by`` = this operator are
never planned for: someone else owns them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from refresh_operator.podsync.model import PodIntent, comparable, is_managed


@dataclasses.dataclass(frozen=True)
class ActualInstance:
    """An instance as Cloud Map holds it. ``healthy`` is None when Cloud Map reported no status."""

    instance_id: str
    attributes: Mapping[str, str]
    healthy: bool | None

    @property
    def managed(self) -> bool:
        return is_managed(self.attributes)


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
    instance_id: str


Action = Register | SetHealth | Deregister


def plan_pod(intent: PodIntent, actual: ActualInstance | None) -> list[Action]:
    """Actions that make Cloud Map hold what one existing pod asks for."""
    if actual is None:
        if intent.healthy and intent.attributes is not None:
            return [Register(intent.instance_id, dict(intent.attributes), healthy=True)]
        return []
    if not actual.managed:
        return []
    if intent.attributes is not None and comparable(actual.attributes) != dict(intent.attributes):
        return [Register(intent.instance_id, dict(intent.attributes), healthy=intent.healthy, replace=True)]
    if actual.healthy != intent.healthy:
        return [SetHealth(intent.instance_id, intent.healthy)]
    return []


def plan_gone(actual: ActualInstance | None) -> list[Action]:
    """Actions for a pod that no longer exists."""
    if actual is None or not actual.managed:
        return []
    return [Deregister(actual.instance_id)]


def plan_route(
    *,
    intents: Mapping[str, PodIntent],
    actual: Mapping[str, ActualInstance],
    backed_elsewhere: Iterable[str] = (),
) -> list[Action]:
    """Every action that repairs drift between a route's pods and its service.

    ``backed_elsewhere``: instance ids that another podSync route sharing the service backs; they are not
    orphans even though this route's pods do not back them.
    """
    others = set(backed_elsewhere)
    actions: list[Action] = []
    for instance_id, intent in sorted(intents.items()):
        actions.extend(plan_pod(intent, actual.get(instance_id)))
    for instance_id, instance in sorted(actual.items()):
        if instance_id not in intents and instance_id not in others:
            actions.extend(plan_gone(instance))
    return actions


class InstanceWriter(Protocol):
    """The Cloud Map calls a plan needs (``cloudmap.CloudMap`` implements it)."""

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
    """Apply every action, at most ``concurrency`` at once; one failure does not stop the others."""
    gate = asyncio.Semaphore(concurrency)

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

    return list(await asyncio.gather(*(run(action) for action in actions)))
