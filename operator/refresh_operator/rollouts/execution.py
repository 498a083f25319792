"""One rollout's fan-out, from Cloud Map to the final status: discover the targets, run the waves with
live progress, and record how it ended (Succeeded, PartiallyFailed, Failed, Halted or Superseded)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from configrefresh_api.phases import HALTED
from configrefresh_api.times import parse_time
from refresh_operator import metrics, status
from refresh_operator.boundary import RoutingPolicy
from refresh_operator.fanout import (
    CANCELLED_ERROR,
    DiscoveryError,
    RefreshPolicy,
    Result,
    Target,
    TargetOutcome,
)
from refresh_operator.fanout.mapping import build_request, effective_payload, recorded_outcome
from refresh_operator.parameter_store import ParameterSnapshot
from refresh_operator.rollouts.conclusion import conclude
from refresh_operator.rollouts.departures import settle_departures
from refresh_operator.rollouts.model import RetryLater, Subject
from refresh_operator.rollouts.status_writer import Progress, ProgressWriter, StatusWriter
from refresh_operator.rollouts.supersession import Running, Supersession
from refresh_operator.rollouts.wave_runner import Halt, WavePlan, WaveRunner
from refresh_operator.routes import Route, RouteError
from refresh_operator.waves import plan_waves

logger = logging.getLogger("refresh_operator.rollouts")

DISCOVERY_RETRIES = 3
"""A Cloud Map failure is retried this many times (2 s, 4 s, 6 s apart) before the rollout is Failed."""

EMPTY_COUNTS = {"targets": 0, "refreshed": 0, "failed": 0, "stale": 0, "gone": 0, "progress": "0/0"}


Discover = Callable[..., Awaitable[list[Target]]]
"""`discover_instances`, or a stand-in with its signature."""


@dataclasses.dataclass(frozen=True)
class Change:
    """What one rollout pushes, where, and how this handler run came about."""

    route: Route
    scope: Mapping[str, str]
    snapshot: ParameterSnapshot
    only: frozenset[str] | None = None
    """Only these instance ids (a targeted repair): no waves."""
    retry: int = 0
    resume: bool = False
    """A person resumed a Halted rollout: start from the wave after the one it halted in."""


@dataclasses.dataclass(frozen=True)
class ExecutionSettings:
    instances_cap: int
    status_patch_interval_seconds: float


class Execution:
    def __init__(
        self,
        *,
        settings: ExecutionSettings,
        cloud_map: Any,
        discover: Discover,
        routing: RoutingPolicy,
        writer: StatusWriter,
        supersession: Supersession,
        waves: WaveRunner,
        policy_for: Callable[[Route], RefreshPolicy],
    ) -> None:
        self._settings = settings
        self._cloud_map = cloud_map
        self._discover = discover
        self._routing = routing
        self._writer = writer
        self._supersession = supersession
        self._waves = waves
        self._policy_for = policy_for

    async def _targets(self, subject: Subject, change: Change) -> list[Target] | None:
        """The route's healthy instances this rollout may refresh; None when discovery failed for good
        (the rollout is then Failed)."""
        route = change.route
        try:
            targets = await self._discover(
                self._cloud_map,
                namespace=route.cloud_map_namespace,
                service=route.cloud_map_service,
                query_parameters=route.query_for(change.scope),
                default_port=route.refresh.port,
            )
        except (DiscoveryError, RouteError) as error:
            if isinstance(error, DiscoveryError) and change.retry < DISCOVERY_RETRIES:
                raise RetryLater(f"{error} (will retry)", delay=2.0 * (change.retry + 1)) from None
            ready = status.condition(
                "Ready",
                status=False,
                reason="DiscoveryFailed",
                message=str(error),
                generation=subject.generation,
            )
            await self._writer.finish(subject, phase=status.FAILED, extra=EMPTY_COUNTS, conditions=[ready])
            subject.post_event("Warning", "Failed", f"DiscoveryFailed: {error}")
            return None
        targets, foreign = self._routing.owned_targets(route, targets)
        if foreign:
            where = f"{route.cloud_map_namespace}/{route.cloud_map_service}"
            logger.warning(
                "ConfigRefresh %s/%s: %d instance(s) of %s belong to another namespace; skipped",
                subject.namespace,
                subject.name,
                foreign,
                where,
            )
            subject.post_event(
                "Warning",
                "ForeignInstancesSkipped",
                f"{foreign} instance(s) of Cloud Map {where} are not owned by namespace {subject.namespace} "
                "(attribute k8s-namespace) and were not refreshed",
            )
        if change.only is not None:
            targets = [target for target in targets if target.instance_id in change.only]
        return targets

    async def _no_targets(self, subject: Subject, route: Route) -> None:
        generation = subject.generation
        await self._writer.finish(
            subject,
            phase=status.SUCCEEDED,
            extra={**EMPTY_COUNTS, "instances": []},
            conditions=[
                status.condition(
                    "NoTargets",
                    status=True,
                    reason="NoHealthyInstances",
                    message=f"Cloud Map {route.cloud_map_namespace}/{route.cloud_map_service} "
                    "has no healthy instance for this scope",
                    generation=generation,
                ),
                status.condition(
                    "Ready", status=True, reason="Succeeded", message="no targets", generation=generation
                ),
            ],
        )
        subject.post_event("Warning", "NoTargets", "no healthy instance to refresh")

    async def execute(self, subject: Subject, change: Change, running: Running) -> None:
        started_mono = time.monotonic()
        targets = await self._targets(subject, change)
        if targets is None:
            return
        if not targets:
            await self._no_targets(subject, change.route)
            return
        plan, outcomes, resumed = self._plan(subject.current, targets, change)
        progress = Progress(
            targets,
            outcomes,
            self._settings.instances_cap,
            list(plan.ends) if plan.spec is not None else None,
        )
        started_at = str(subject.current.get("startedAt") or status.now_text())
        # A handler retried mid-rollout keeps the rollout's deadline; a person's resume starts a new one.
        keep_deadline = parse_time(started_at).timestamp() if resumed and not change.resume else None
        halt = await self._push(subject, change, running, plan, progress, started_at, keep_deadline, resumed)
        if halt is not None and not running.cancel.is_set():
            extra = {"startedAt": started_at, **progress.status()}
            await self._writer.halt(subject, extra=extra, reason=halt.reason, message=halt.message)
            subject.post_event("Warning", HALTED, halt.message)
            logger.warning("ConfigRefresh %s/%s halted: %s", subject.namespace, subject.name, halt.message)
            return
        if running.cancel.is_set() and running.superseded_by:
            for instance_id, outcome in list(outcomes.items()):
                if outcome.error == CANCELLED_ERROR:
                    del outcomes[instance_id]
            extra = {**progress.status(), "startedAt": started_at}
            await self._supersession.mark_superseded(subject, running.superseded_by, extra=extra)
            return
        end = conclude(targets, outcomes, change.snapshot, generation=subject.generation)
        extra = progress.status()
        if end.latency_seconds is not None:
            extra["latencyMs"] = round(end.latency_seconds * 1000)
            metrics.COMMIT_TO_APPLIED.observe(end.latency_seconds)
        metrics.ROLLOUT_DURATION.observe(time.monotonic() - started_mono)
        extra["startedAt"] = started_at
        await self._writer.finish(subject, phase=end.phase, extra=extra, conditions=end.conditions)
        subject.post_event("Normal" if end.phase == status.SUCCEEDED else "Warning", end.phase, end.message)
        logger.info("ConfigRefresh %s/%s %s: %s", subject.namespace, subject.name, end.phase, end.message)

    def _plan(
        self, current: Mapping[str, Any], targets: list[Target], change: Change
    ) -> tuple[WavePlan, dict[str, TargetOutcome], bool]:
        """The waves to run, the outcomes already settled, and whether an earlier run had started."""
        outcomes = status.outcomes_from_status(current, targets)
        resumed = bool(outcomes) or current.get("phase") == status.IN_PROGRESS
        waving = change.route.rollout if change.only is None else None
        ends = plan_waves(waving.waves, len(targets)) if waving is not None else [len(targets)]
        plan = WavePlan(ends, waving, int(current.get("currentWave") or 0) + 1 if change.resume else 1)
        if plan.first > 1:
            # The waves before a resume are settled: their failures stay failures (not retried, counted).
            earlier = {
                target.instance_id: target for target in targets[: ends[min(plan.first, len(ends)) - 2]]
            }
            for entry in current.get("instances") or []:
                target = earlier.get(str(entry.get("id")))
                if target is not None and entry.get("result") == Result.FAILED.value:
                    outcomes.setdefault(target.instance_id, recorded_outcome(target, entry))
        return plan, outcomes, resumed

    async def _push(
        self,
        subject: Subject,
        change: Change,
        running: Running,
        plan: WavePlan,
        progress: Progress,
        started_at: str,
        keep_deadline: float | None,
        resumed: bool,
    ) -> Halt | None:
        """Run the waves with progress written live; returns why the rollout halted, if it did."""
        writer = ProgressWriter(
            self._writer, subject, progress, interval=self._settings.status_patch_interval_seconds
        )
        ready = status.condition(
            "Ready",
            status=False,
            reason="InProgress",
            message="rollout running",
            generation=subject.generation,
        )
        writer.start(
            {
                "phase": status.IN_PROGRESS,
                "startedAt": started_at,
                "observedGeneration": subject.generation,
                **progress.status(),
                "conditions": status.merge_conditions(subject.current.get("conditions") or [], [ready]),
            }
        )
        snapshot = change.snapshot
        subject.post_event(
            "Normal",
            "Started",
            f"{'resumed' if resumed else 'started'} refresh of {snapshot.name} v{snapshot.version} "
            f"on {len(progress.targets)} instance(s)",
        )

        def on_wave(index: int) -> None:
            progress.current_wave = index
            writer.changed()

        payload = effective_payload(change.route, snapshot.value_type)
        route = change.route

        async def present() -> list[Target]:
            return await self._discover(
                self._cloud_map,
                namespace=route.cloud_map_namespace,
                service=route.cloud_map_service,
                query_parameters=route.query_for(change.scope),
                default_port=route.refresh.port,
            )

        async def settle(outcomes: list[TargetOutcome]) -> list[TargetOutcome]:
            where = f"Cloud Map {route.cloud_map_namespace}/{route.cloud_map_service}"
            return await settle_departures(outcomes, present=present, where=where)

        try:
            return await self._waves.run(
                targets=progress.targets,
                plan=plan,
                request=build_request(
                    refresh_id=subject.name, snapshot=snapshot, payload=payload, scope=change.scope
                ),
                policy=self._policy_for(change.route),
                outcomes=progress.outcomes,
                on_outcome=writer.record,
                on_wave=on_wave,
                cancel=running.cancel,
                started_at=keep_deadline,
                settle=settle,
            )
        finally:
            await writer.stop()
