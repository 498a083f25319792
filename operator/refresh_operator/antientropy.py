"""Anti-entropy: ask every healthy instance of a route what it holds, and repair the ones behind.

A rollout reaches the instances that are healthy while it runs. One that was unhealthy then, joined the
service after the rollout (and bootstrapped before the write), or failed every attempt, stays on the old
version until its TTL re-read. So each resync pass (resync.py), after recovering missed changes, calls
`GetState` on every HEALTHY instance Cloud Map lists for the route (through `FanOut.states`: once per
instance, bounded by the route's maxConcurrency, with its timeout, TLS, token and the refreshes' circuit
breakers) and compares, per parameter, what the instance
holds with the newest version: the one Parameter Store holds now, or the newest Delete recorded by the
route's objects for a parameter that is gone.

An instance is behind when it lacks the parameter, holds an older (LastModifiedDate, Version), or still
holds a parameter that was deleted. The instances behind on one parameter get one ConfigRefresh with
`trigger: resync` and `spec.targets` listing only them; the rollout handler refreshes only those. Left
alone: a parameter with a rollout still running, and a change younger than the grace period (its own
rollout is on its way). An instance that does not answer GetState is skipped: it is not serving, and the
next pass looks again.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from configrefresh_api.phases import Trigger
from configrefresh_api.times import canonical_time
from configrefresh_api.versions import Operation
from refresh_operator import metrics
from refresh_operator.boundary import routing_from_settings
from refresh_operator.context import OperatorContext
from refresh_operator.fanout import DiscoveryError, RefreshPolicy, Target, discover_instances
from refresh_operator.fanout.states import Held, InstanceState
from refresh_operator.kube import KubeError
from refresh_operator.parameter_store import ParameterSnapshot
from refresh_operator.recorder import Recorder
from refresh_operator.resync import Known
from refresh_operator.routes import Route, RouteError

logger = logging.getLogger("refresh_operator.antientropy")


class StateFanOut(Protocol):
    """What anti-entropy needs of the fan-out: `FanOut.states` (an in-memory one in the unit tests)."""

    async def states(
        self, targets: Sequence[Target], *, name_prefix: str, policy: RefreshPolicy
    ) -> dict[str, InstanceState | None]: ...


def _millis(moment: datetime.datetime) -> datetime.datetime:
    """Parameter Store has milliseconds; the instance's timestamp may carry more or less precision."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def is_behind(held: Held | None, newest: ParameterSnapshot) -> bool:
    if newest.operation is Operation.DELETE:
        return held is not None and not held.deleted
    if held is None or held.deleted:
        return held is None or _millis(held.key.last_modified) < _millis(newest.last_modified)
    mine = (_millis(held.key.last_modified), held.key.version)
    return mine < (_millis(newest.last_modified), newest.version)


def settled(snapshot: ParameterSnapshot, known: Known | None, now: datetime.datetime, grace: float) -> bool:
    """True if instances should hold `snapshot` by now: a finished rollout covers it, or (a parameter
    without objects, e.g. older than the route) it is older than the grace period."""
    if known is None:
        return (now - snapshot.last_modified).total_seconds() >= grace
    return not known.busy and known.newest >= snapshot.key


class AntiEntropy:
    """Finds instances behind the newest versions of a route's parameters and records targeted repairs."""

    def __init__(
        self,
        *,
        context: OperatorContext,
        fanout: StateFanOut,
        policy_for: Callable[[Route], RefreshPolicy],
    ) -> None:
        self._context = context
        self._fanout = fanout
        self._recorder = Recorder(kube_api=context.kube, blocking=context.blocking, values=context.values)
        self._policy_for = policy_for
        self._routing = routing_from_settings(context.settings)

    async def repair(
        self, route: Route, claimed: Sequence[ParameterSnapshot], known: Mapping[str, Known]
    ) -> int:
        """One anti-entropy pass of `route`; returns the number of instances sent a targeted refresh."""
        now = datetime.datetime.now(datetime.UTC)
        grace = self._context.settings.resync_grace_seconds
        newest = [snapshot for snapshot in claimed if settled(snapshot, known.get(snapshot.name), now, grace)]
        present = {snapshot.name for snapshot in claimed}
        for name, entry in known.items():
            if entry.operation is Operation.DELETE and not entry.busy and name not in present:
                newest.append(
                    ParameterSnapshot(
                        name=name,
                        operation=Operation.DELETE,
                        version=0,
                        last_modified=entry.newest.last_modified,
                        value_type="String",
                    )
                )
        if not newest:
            return 0
        groups: dict[tuple[tuple[str, str], ...], list[ParameterSnapshot]] = {}
        for snapshot in newest:
            try:
                wanted = route.query_for(route.scope_of(snapshot.name) or {})
            except RouteError:
                continue
            groups.setdefault(tuple(sorted(wanted.items())), []).append(snapshot)
        policy = self._policy_for(route)
        states: dict[str, InstanceState | None] = {}
        repaired = 0
        for query, snapshots in groups.items():
            try:
                targets = await discover_instances(
                    self._context.clients.servicediscovery,
                    namespace=route.cloud_map_namespace,
                    service=route.cloud_map_service,
                    query_parameters=dict(query),
                    default_port=route.refresh.port,
                )
            except DiscoveryError as error:
                logger.warning("Anti-entropy of %s/%s skipped: %s", route.namespace, route.name, error)
                continue
            targets, _ = self._routing.owned_targets(route, targets)
            missing = [target for target in targets if target.instance_id not in states]
            states.update(await self._fanout.states(missing, name_prefix=route.prefix, policy=policy))
            answered = [
                (target.instance_id, held)
                for target in targets
                if (held := states.get(target.instance_id)) is not None
            ]
            for snapshot in snapshots:
                behind = sorted(
                    instance_id
                    for instance_id, held in answered
                    if is_behind(held.get(snapshot.name), snapshot)
                )
                if behind:
                    repaired += await self._record(route, snapshot, behind, now)
        return repaired

    async def _record(
        self, route: Route, snapshot: ParameterSnapshot, behind: list[str], now: datetime.datetime
    ) -> int:
        try:
            recorded = await self._recorder.record(
                route,
                snapshot,
                trigger=Trigger.RESYNC,
                targets=behind,
                repair=f"{canonical_time(now)} {','.join(behind)}",
            )
        except KubeError as error:
            logger.warning(
                "Repair ConfigRefresh on %s/%s not created: %s", route.namespace, route.name, error
            )
            return 0
        if not recorded.created:
            return 0
        metrics.RESYNC_REPAIRED_INSTANCES.inc(len(behind))
        logger.warning(
            "Anti-entropy: %d instance(s) behind on %s (%s v%d); targeted refresh %s/%s: %s",
            len(behind),
            snapshot.name,
            snapshot.operation,
            snapshot.version,
            route.namespace,
            recorded.name,
            ", ".join(behind[:10]) + (f" and {len(behind) - 10} more" if len(behind) > 10 else ""),
        )
        return len(behind)
