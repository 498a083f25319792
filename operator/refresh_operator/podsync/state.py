"""What podSync holds per route, and the bookkeeping every Cloud Map write leaves in it.

``known`` per route is the last full ListInstances, updated by every write podSync makes (``record``), so
the fast path can compare a pod against it without a Cloud Map call. Everything is keyed by Cloud Map
instance id (``<namespace>.<pod>``, see ``model.instance_id_for``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from refresh_operator.cloudmap import CloudMapError, InstanceNotFound, ServiceRef
from refresh_operator.podsync import metrics
from refresh_operator.podsync.model import RouteSync
from refresh_operator.podsync.reconcile import (
    Action,
    ActualInstance,
    Outcome,
    Register,
    SetHealth,
)

RouteKey = tuple[str, str]
EventSink = Callable[[Mapping[str, Any], str, str], None]
"""(route body, reason, message) → post a Warning Event on the route."""


@dataclasses.dataclass
class RouteState:
    route: RouteSync | None
    body: Mapping[str, Any]
    invalid: str | None = None
    service: ServiceRef | None = None
    service_checked_at: float = 0.0
    known: dict[str, ActualInstance] = dataclasses.field(default_factory=dict)
    seeded: bool = False
    pods: set[str] = dataclasses.field(default_factory=set)
    """Instance ids of the route's selected pods."""
    touched_at: dict[str, float] = dataclasses.field(default_factory=dict)
    error: CloudMapError | None = None
    last_condition: dict[str, Any] | None = None
    last_event: tuple[str, str] | None = None
    written_counts: tuple[int, int] | None = None
    flush: asyncio.Task[None] | None = None
    dirty: bool = False
    """Something changed since the counts were last computed for a status write (see ``flusher``)."""
    seed_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


def shares(one: RouteSync, other: RouteSync) -> bool:
    """Whether two routes can back the same instances: same Cloud Map service, same Kubernetes namespace."""
    return one.target == other.target and one.namespace == other.namespace


def action_name(action: Action) -> str:
    if isinstance(action, Register):
        return "register"
    if isinstance(action, SetHealth):
        return "set_health"
    return "deregister"


def record(state: RouteState, outcomes: list[Outcome], *, source: str) -> None:
    """Count the outcomes of a plan and keep ``state.known`` in step with what succeeded."""
    for outcome in outcomes:
        action = outcome.action
        metrics.ACTIONS.labels(action_name(action), source, "error" if outcome.error else "ok").inc()
        if outcome.error is not None:
            if isinstance(outcome.error, InstanceNotFound):
                state.known.pop(action.instance_id, None)
            continue
        if isinstance(action, Register):
            state.known[action.instance_id] = ActualInstance(
                action.instance_id, dict(action.attributes), action.healthy
            )
        elif isinstance(action, SetHealth):
            current = state.known.get(action.instance_id)
            if current is not None:
                state.known[action.instance_id] = dataclasses.replace(current, healthy=action.healthy)
        else:
            state.known.pop(action.instance_id, None)


def counts(state: RouteState) -> tuple[int, int]:
    """(registered, healthy) instances of the route's pods as podSync last saw them."""
    if state.route is None:
        return (0, 0)
    namespace = state.route.namespace
    mine = [
        state.known[instance_id]
        for instance_id in state.pods
        if instance_id in state.known and state.known[instance_id].owned_by(namespace)
    ]
    return (len(mine), sum(1 for instance in mine if instance.healthy))
