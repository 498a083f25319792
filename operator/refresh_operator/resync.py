"""Missed-event recovery: every route's prefix is re-read at `spec.resync.intervalSeconds` and compared with
the ConfigRefresh objects of the route.

Parameter Store publishes change events on a best-effort basis; a lost event would leave the fleet on the
old value until each instance's TTL re-read. So one operator-level loop lists each route's prefix with
GetParametersByPath (10 parameters per call, for the whole fleet, not per instance) and compares every
parameter's (LastModifiedDate, Version) with the newest ConfigRefresh of that route and parameter (found
by the route label). Anything newer gets a ConfigRefresh with `trigger: resync`, under the same
deterministic name the consumer would have used, so a late event and the resync never make two objects.

What is not a missed event:
- a change younger than the grace period (`CONFIG_REFRESH_RESYNC_GRACE_SECONDS`): its event may still be
  on its way through EventBridge and SQS;
- a parameter without any ConfigRefresh whose last write is older than the route (the instances loaded it
  at bootstrap; a new route over an existing tree must not flood the fleet) or older than the retention
  age (its objects were deleted by retention, not missed);
- a parameter gone from Parameter Store is a missed delete only when it is still absent on the next pass
  (a delete event in flight makes its own object).

After recovery the same pass runs anti-entropy (antientropy.py) for the route. Passes of one route never
overlap, and at most MAX_CONCURRENT_PASSES run at once over all routes (routes seen together fall due
together); a due route waits for a slot, verify requests first, then the longest overdue. The first pass
of a route runs one interval after the operator first sees it, or at once when `configctl verify` sets
the route's verify annotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from configrefresh_api.groupversion import REFRESHES, ROUTES
from configrefresh_api.labels import ANNOTATION_PARAMETER_NAME, refresh_selector
from configrefresh_api.phases import TERMINAL_PHASES, Trigger
from configrefresh_api.refresh import ConfigRefresh
from configrefresh_api.times import canonical_time, now_text, parse_time
from configrefresh_api.versions import Operation, VersionKey
from refresh_operator import metrics
from refresh_operator.context import OperatorContext
from refresh_operator.kube import KubeError
from refresh_operator.leadership import Leadership
from refresh_operator.parameter_store import ParameterSnapshot, ParameterStoreError, list_parameters
from refresh_operator.recorder import Recorder
from refresh_operator.routes import Route

logger = logging.getLogger("refresh_operator.resync")

TICK_SECONDS = 1.0
MAX_CONCURRENT_PASSES = 16
"""Passes running at once, over all routes. Routes seen together fall due together (1,000 routes: 1,000
passes in one tick, each holding its listings and GetState answers: +100 MiB RSS); the rest wait for a
slot, still due. 16 is the default I/O thread pool: more passes would mostly wait for a thread."""

Repairer = Callable[[Route, list[ParameterSnapshot], Mapping[str, "Known"]], Awaitable[int]]
"""(route, parameters in the store, what the objects say) → instances sent a targeted refresh."""


@dataclasses.dataclass
class Known:
    """What the ConfigRefresh objects of one route say about one parameter."""

    newest: VersionKey
    operation: Operation
    busy: bool = False
    """Some rollout of this parameter is still running (anti-entropy leaves it alone)."""


@dataclasses.dataclass
class PassReport:
    listed: int = 0
    calls: int = 0
    recovered: int = 0
    repaired: int = 0


def known_versions(objects: list[dict[str, Any]]) -> dict[str, Known]:
    """The newest (LastModifiedDate, Version) per parameter name among a route's ConfigRefresh objects.

    Manual refreshes without a lastModified name no version and are ignored for the comparison; they only
    mark the parameter busy while they run."""
    known: dict[str, Known] = {}
    for obj in objects:
        refresh = ConfigRefresh.from_body(obj)
        parameter = refresh.spec.parameter
        name = refresh.metadata.annotations.get(ANNOTATION_PARAMETER_NAME) or parameter.name
        if not name:
            continue
        busy = refresh.status is None or refresh.status.phase not in TERMINAL_PHASES
        key = parameter.key
        entry = known.get(name)
        if key is not None and (entry is None or key > entry.newest):
            entry = known[name] = Known(
                newest=key, operation=parameter.operation, busy=entry.busy if entry else False
            )
        if busy and entry is not None:
            entry.busy = True
    return known


def is_missed(
    snapshot: ParameterSnapshot,
    known: Known | None,
    *,
    now: datetime.datetime,
    grace_seconds: float,
    route_created: datetime.datetime | None,
    retention_seconds: int,
) -> bool:
    """True if the store holds a change of this parameter that no ConfigRefresh of the route covers."""
    if (now - snapshot.last_modified).total_seconds() < grace_seconds:
        return False
    if known is not None:
        return snapshot.key > known.newest
    if route_created is not None and snapshot.last_modified <= route_created:
        return False
    return not (retention_seconds and (now - snapshot.last_modified).total_seconds() > retention_seconds)


class Resync:
    """The operator-level resync loop over every indexed route."""

    def __init__(
        self,
        *,
        context: OperatorContext,
        repair: Repairer | None = None,
        max_concurrent_passes: int = MAX_CONCURRENT_PASSES,
        leadership: Leadership | None = None,
    ) -> None:
        self._context = context
        self._recorder = Recorder(kube_api=context.kube, blocking=context.blocking, values=context.values)
        self._repair = repair
        self._due: dict[tuple[str, str], float] = {}
        self._verify_seen: dict[tuple[str, str], str] = {}
        self._interval: dict[tuple[str, str], int] = {}
        self._absent: dict[tuple[str, str], set[str]] = {}
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._max_passes = max(1, max_concurrent_passes)
        self._leadership = leadership

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._tick()
            except Exception:
                logger.exception("resync scheduling failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=TICK_SECONDS)
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _tick(self) -> None:
        now = asyncio.get_running_loop().time()
        waiting = self._waiting(now)
        if not waiting or len(self._running) >= self._max_passes:
            return
        if self._leadership is not None and not await self._leadership.is_active():
            # A standby replica skips the passes that fell due (they count as run: due again one interval
            # on), so it reads Parameter Store not at all and the peering object once per interval.
            for _, _, key, route in waiting:
                self._verify_seen[key] = route.verify_requested
                if route.resync_interval_seconds > 0:
                    self._due[key] = now + route.resync_interval_seconds
            metrics.BACKGROUND_PASSES_SKIPPED.labels("resync").inc(len(waiting))
            return
        self._start(waiting, now)

    def _waiting(self, now: float) -> list[tuple[bool, float, tuple[str, str], Route]]:
        """The routes whose pass is due and not running, verify requests first, then the longest overdue."""
        live = {route.key: route for route in self._context.routes.all()}
        for key in [k for k in self._due if k not in live]:
            self._due.pop(key, None)
            self._verify_seen.pop(key, None)
            self._interval.pop(key, None)
            self._absent.pop(key, None)
        waiting: list[tuple[bool, float, tuple[str, str], Route]] = []
        for key, route in live.items():
            interval = route.resync_interval_seconds
            if key not in self._verify_seen:
                self._verify_seen[key] = route.verify_requested
            verify = route.verify_requested != self._verify_seen[key]
            due = self._due.get(key)
            if interval > 0 and (due is None or self._interval.get(key) != interval):
                due = self._due[key] = now + interval
            self._interval[key] = interval
            if key in self._running:
                continue
            if verify or (interval > 0 and due is not None and now >= due):
                waiting.append((not verify, due if due is not None else now, key, route))
        # Verify requests first (someone waits on them), then the longest overdue: a route that waited
        # for a slot is not overtaken by one that just fell due again.
        waiting.sort(key=lambda item: (item[0], item[1]))
        return waiting

    def _start(self, waiting: list[tuple[bool, float, tuple[str, str], Route]], now: float) -> None:
        for _, _, key, route in waiting[: max(0, self._max_passes - len(self._running))]:
            self._verify_seen[key] = route.verify_requested
            if route.resync_interval_seconds > 0:
                self._due[key] = now + route.resync_interval_seconds
            task = asyncio.create_task(self._guarded(route), name=f"resync {route.namespace}/{route.name}")
            self._running[key] = task
            task.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: tuple[str, str], _: asyncio.Task[None]) -> None:
        self._running.pop(key, None)

    async def _record(self, route: Route, fields: Mapping[str, Any]) -> None:
        """Write the pass's outcome to the route's status.resync (best effort: the next pass writes again)."""
        resync = {
            "lastPassTime": now_text(),
            "verifyRequest": route.verify_requested[:128],
            "error": None,
            **fields,
        }
        try:
            await self._context.blocking.call(
                self._context.kube.patch_status, ROUTES, route.namespace, route.name, {"resync": resync}
            )
        except KubeError as error:
            metrics.KUBE_API_ERRORS.labels("patch_route_status").inc()
            logger.warning("Resync status of %s/%s not written: %s", route.namespace, route.name, error)

    async def _guarded(self, route: Route) -> None:
        try:
            report = await self.pass_once(route)
        except asyncio.CancelledError:
            raise
        except (ParameterStoreError, KubeError) as error:
            metrics.RESYNC_PASSES.labels("error").inc()
            logger.warning("Resync of ConfigRoute %s/%s failed: %s", route.namespace, route.name, error)
            await self._record(route, {"error": str(error)[:1024]})
            return
        except Exception as error:
            metrics.RESYNC_PASSES.labels("error").inc()
            logger.exception("Resync of ConfigRoute %s/%s failed", route.namespace, route.name)
            await self._record(route, {"error": f"internal error: {type(error).__name__}"})
            return
        metrics.RESYNC_PASSES.labels("ok").inc()
        await self._record(
            route,
            {
                "parameters": report.listed,
                "calls": report.calls,
                "recovered": report.recovered,
                "repairedInstances": report.repaired,
            },
        )
        logger.info(
            "Resync of ConfigRoute %s/%s: %d parameter(s), %d call(s), %d recovered, %d instance(s) repaired",
            route.namespace,
            route.name,
            report.listed,
            report.calls,
            report.recovered,
            report.repaired,
        )

    async def pass_once(self, route: Route) -> PassReport:
        """One resync pass of one route: recover missed changes, then anti-entropy."""
        report = PassReport()
        with_value = route.refresh.payload == "value"
        try:
            listed, calls = await self._context.blocking.call(
                list_parameters, self._context.clients.ssm, prefix=route.prefix, with_value=with_value
            )
        except ParameterStoreError:
            metrics.PARAMETER_STORE_CALLS.labels("GetParametersByPath", "error").inc()
            raise
        metrics.PARAMETER_STORE_CALLS.labels("GetParametersByPath", "ok").inc(calls)
        claimed = [snapshot for snapshot in listed if route.scope_of(snapshot.name) is not None]
        report.listed, report.calls = len(claimed), calls
        objects = await self._context.blocking.call(
            self._context.kube.list,
            REFRESHES,
            route.namespace,
            label_selector=refresh_selector(route=route.name),
        )
        known = known_versions(objects)
        now = datetime.datetime.now(datetime.UTC)
        created = parse_time(route.created_at) if route.created_at else None
        for snapshot in claimed:
            if is_missed(
                snapshot,
                known.get(snapshot.name),
                now=now,
                grace_seconds=self._context.settings.resync_grace_seconds,
                route_created=created,
                retention_seconds=self._context.settings.retention_seconds,
            ) and await self._recover(route, snapshot):
                report.recovered += 1
                known[snapshot.name] = Known(newest=snapshot.key, operation=Operation.UPSERT, busy=True)
        report.recovered += await self._recover_deletes(route, claimed, known, now)
        if self._repair is not None:
            report.repaired = await self._repair(route, claimed, known)
        return report

    async def _recover_deletes(
        self, route: Route, claimed: list[ParameterSnapshot], known: dict[str, Known], now: datetime.datetime
    ) -> int:
        present = {snapshot.name for snapshot in claimed}
        gone = {
            name
            for name, entry in known.items()
            if entry.operation is Operation.UPSERT
            and name not in present
            and route.scope_of(name) is not None
        }
        previously = self._absent.get(route.key, set())
        self._absent[route.key] = gone - previously
        recovered = 0
        for name in sorted(gone & previously):
            deletion = ParameterSnapshot(
                name=name, operation=Operation.DELETE, version=0, last_modified=now, value_type="String"
            )
            if await self._recover(route, deletion):
                recovered += 1
                known[name] = Known(newest=deletion.key, operation=Operation.DELETE, busy=True)
        return recovered

    async def _recover(self, route: Route, snapshot: ParameterSnapshot) -> bool:
        recorded = await self._recorder.record(route, snapshot, trigger=Trigger.RESYNC)
        if recorded.created:
            metrics.RESYNC_RECOVERED.inc()
            logger.warning(
                "Resync recovered a missed change: ConfigRefresh %s/%s for %s %s v%d of %s",
                route.namespace,
                recorded.name,
                snapshot.name,
                snapshot.operation,
                snapshot.version,
                canonical_time(snapshot.last_modified),
            )
        return recorded.created
