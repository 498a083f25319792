"""One ConfigRefresh rollout: resolve targets, push the change, record progress and the outcome.

Progress goes straight to the /status subresource as throttled merge patches (kopf applies a handler's
own patch only once, at the end), so `kubectl get cfgr -w` shows Refreshed climbing. Per-instance results
are recorded as they come, which makes the rollout restart-safe: a resumed handler passes what status
already holds as `already_done`, and only unacknowledged instances are called again.

A newer rollout of the same route and parameter cancels an older one still running (Superseded), and
marks an older Halted one Superseded; an older one starting after a newer one is Superseded at once.
The bookkeeping of running ones is per process, which matches kopf's peering model of one active
operator; Halted ones are found through the API (they run nowhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh_api.labels import LABEL_HALTED, refresh_selector
from configrefresh_api.phases import HALTED
from configrefresh_api.refresh import ConfigRefreshSpec
from configrefresh_api.times import canonical_time, parse_time
from configrefresh_api.versions import Operation, VersionKey
from refresh_operator import kube, metrics, status
from refresh_operator.aws import AwsClients, Blocking
from refresh_operator.boundary import HealthGateRefused, admission_from_settings
from refresh_operator.fanout import (
    CANCELLED_ERROR,
    DiscoveryError,
    FanOut,
    RefreshPolicy,
    Result,
    TargetOutcome,
    TlsSettings,
    discover_instances,
)
from refresh_operator.kube import Kube, KubeError
from refresh_operator.parameter_store import ParameterSnapshot, ParameterStoreError, read_parameter
from refresh_operator.recorder import refresh_body
from refresh_operator.routes import Route, RouteError, RouteIndex
from refresh_operator.settings import OperatorSettings
from refresh_operator.values import ValueCache
from refresh_operator.waves import RolloutSpec, plan_waves

logger = logging.getLogger("refresh_operator.rollout")

DISCOVERY_RETRIES = 3
"""A Cloud Map failure is retried this many times (2 s, 4 s, 6 s apart) before the rollout is Failed."""

EventPoster = Callable[[str, str, str], None]
"""(type "Normal"|"Warning", reason, message) → a Kubernetes Event on the object."""

_VALUE_TYPES = {
    "String": pb.VALUE_TYPE_STRING,
    "StringList": pb.VALUE_TYPE_STRING_LIST,
    "SecureString": pb.VALUE_TYPE_SECURE_STRING,
}


class RetryLater(Exception):
    """A transient problem; the handler should be retried after `delay` seconds."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


@dataclasses.dataclass
class _Running:
    key: VersionKey
    name: str
    cancel: asyncio.Event
    superseded_by: str | None = None


def _timestamp(moment: datetime.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(datetime.UTC))
    return stamp


def effective_payload(route: Route, value_type: str) -> str:
    """The payload mode of one parameter on this route: a SecureString never travels as a value over a
    plaintext channel (see RefreshSpec.secure_strings_invalidated); instances re-read it instead."""
    if value_type == "SecureString" and route.refresh.secure_strings_invalidated:
        return "invalidate"
    return route.refresh.payload


def build_request(
    *, refresh_id: str, snapshot: ParameterSnapshot, payload: str, scope: Mapping[str, str]
) -> pb.RefreshRequest:
    delete = snapshot.operation is Operation.DELETE
    request = pb.RefreshRequest(
        refresh_id=refresh_id,
        parameter_name=snapshot.name,
        version=snapshot.version,
        last_modified=_timestamp(snapshot.last_modified),
        operation=pb.OPERATION_DELETE if delete else pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE if payload == "value" else pb.PAYLOAD_MODE_INVALIDATE,
        value_type=_VALUE_TYPES.get(snapshot.value_type, pb.VALUE_TYPE_STRING),
        scope=dict(scope),
        committed_at=_timestamp(snapshot.last_modified),
    )
    if payload == "value" and not delete and snapshot.value is not None:
        request.value = snapshot.value
    return request


class Rollouts:
    """Runs ConfigRefresh rollouts; one instance per operator process."""

    def __init__(
        self,
        *,
        settings: OperatorSettings,
        clients: AwsClients,
        blocking: Blocking,
        kube_api: Kube,
        routes: RouteIndex,
        values: ValueCache,
        fanout: FanOut,
    ) -> None:
        self._settings = settings
        self._clients = clients
        self._blocking = blocking
        self._kube = kube_api
        self._routes = routes
        self._values = values
        self._fanout = fanout
        self._running: dict[tuple[str, str, str], _Running] = {}
        self._admission = admission_from_settings(settings)
        self._routing = self._admission.routing
        self._health_gates = self._admission.health_gates

    # -- helpers -------------------------------------------------------------------------------------

    async def _patch(
        self, namespace: str, name: str, patch: Mapping[str, Any], *, must: bool = False
    ) -> None:
        attempt = 0
        while True:
            try:
                await self._blocking.call(self._kube.patch_status, kube.REFRESHES, namespace, name, patch)
                return
            except KubeError as error:
                metrics.KUBE_API_ERRORS.labels("patch_refresh_status").inc()
                if error.status == 404:
                    return
                attempt += 1
                if not must or attempt >= 5:
                    if must:
                        raise RetryLater(f"status patch failed: {error}", delay=5) from None
                    logger.warning("Progress patch of %s/%s failed: %s", namespace, name, error)
                    return
                await asyncio.sleep(min(0.5 * 2**attempt, 5))

    async def _label_halted(self, namespace: str, name: str, halted: bool) -> None:
        """Best effort (see LABEL_HALTED): a failure only means a successor may not find this rollout."""
        labels = {"metadata": {"labels": {LABEL_HALTED: "true" if halted else None}}}
        try:
            await self._blocking.call(self._kube.patch, kube.REFRESHES, namespace, name, labels)
        except KubeError as error:
            metrics.KUBE_API_ERRORS.labels("patch_refresh").inc()
            if error.status != 404:
                logger.warning("Halted label of %s/%s not updated: %s", namespace, name, error)

    async def _route(self, namespace: str, name: str) -> Route:
        route = self._routes.get(namespace, name)
        if route is not None:
            return route
        try:
            obj = await self._blocking.call(self._kube.get, kube.ROUTES, namespace, name)
        except KubeError as error:
            raise RetryLater(f"cannot read ConfigRoute {name}: {error}", delay=5) from None
        if obj is None:
            raise RouteError("RouteNotFound", f"ConfigRoute {namespace}/{name} does not exist")
        return self._admission.admit(obj)

    def policy(self, route: Route) -> RefreshPolicy:
        """How instances of `route` are called (timeouts, concurrency, TLS, token)."""
        return self._policy(route)

    def _policy(self, route: Route) -> RefreshPolicy:
        spec = route.refresh
        tls = None
        if spec.tls_enabled:
            s = self._settings
            tls = TlsSettings(
                ca_file=str(s.tls_ca_file) if s.tls_ca_file else None,
                cert_file=str(s.tls_cert_file) if s.tls_cert_file else None,
                key_file=str(s.tls_key_file) if s.tls_key_file else None,
                server_name=spec.tls_server_name,
                ca_bundle=spec.ca_bundle,
            )
        token_file = None
        audience = None
        if spec.auth_type == "bearerToken" and self._settings.token_file:
            token_file = str(self._settings.token_file)
        elif spec.auth_type == "serviceAccountToken":
            audience = spec.audience
        return RefreshPolicy(
            timeout_seconds=spec.timeout_seconds,
            max_concurrency=spec.max_concurrency,
            max_attempts=spec.max_attempts,
            deadline_seconds=spec.deadline_seconds,
            tls=tls,
            token_file=token_file,
            token_audience=audience,
            allow_plaintext=spec.insecure_allow_plaintext,
        )

    async def _read(self, name: str, *, with_value: bool, deleted_at: datetime.datetime) -> ParameterSnapshot:
        try:
            snapshot = await self._blocking.call(
                read_parameter, self._clients.ssm, name=name, with_value=with_value, deleted_at=deleted_at
            )
        except ParameterStoreError as error:
            metrics.PARAMETER_STORE_CALLS.labels("GetParameter", "error").inc()
            raise RetryLater(str(error), delay=5) from None
        metrics.PARAMETER_STORE_CALLS.labels(
            "GetParameter", "not_found" if snapshot.version == 0 else "ok"
        ).inc()
        return snapshot

    async def _finish(
        self,
        *,
        namespace: str,
        name: str,
        phase: str,
        generation: int,
        existing: Mapping[str, Any],
        extra: Mapping[str, Any],
        conditions: list[dict[str, Any]],
    ) -> None:
        patch: dict[str, Any] = {
            "phase": phase,
            "completedAt": status.now_text(),
            "observedGeneration": generation,
            "conditions": status.merge_conditions(existing.get("conditions") or [], conditions),
            **extra,
        }
        if "startedAt" not in existing and "startedAt" not in extra:
            patch["startedAt"] = patch["completedAt"]
        await self._patch(namespace, name, patch, must=True)
        self._values.fan_out_done(namespace, name)
        metrics.ROLLOUTS.labels(phase).inc()
        if existing.get("phase") == HALTED:
            await self._label_halted(namespace, name, False)

    # -- the rollout ---------------------------------------------------------------------------------

    async def run(
        self,
        *,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        current: Mapping[str, Any],
        generation: int,
        post_event: EventPoster,
        retry: int = 0,
        resume: bool = False,
    ) -> None:
        if current.get("phase") in status.TERMINAL_PHASES:
            return
        if current.get("phase") == HALTED and not resume:
            return  # waits for `configctl rollout resume|abort`
        typed = ConfigRefreshSpec.from_body(spec)
        parameter = typed.parameter
        route_name = typed.route
        scope = dict(typed.scope)
        trigger = str(typed.source.trigger)
        only = set(typed.targets) or None
        try:
            route = await self._route(namespace, route_name)
            if not parameter.name.startswith(route.prefix):
                raise RouteError(
                    "OutsideRoute", f"{parameter.name} is not under the route's prefix {route.prefix}"
                )
            if not scope and route.scope_pattern is not None:
                scope = route.scope_of(parameter.name) or {}
        except RouteError as error:
            await self._finish(
                namespace=namespace,
                name=name,
                phase=status.FAILED,
                generation=generation,
                existing=current,
                extra={},
                conditions=[
                    status.condition(
                        "Ready", status=False, reason=error.reason, message=str(error), generation=generation
                    )
                ],
            )
            post_event("Warning", "Failed", f"{error.reason}: {error}")
            return

        snapshot = self._values.take(namespace, name)
        spec_key = parameter.key
        if snapshot is None or spec_key is None or snapshot.key != spec_key:
            if trigger == "manual" or parameter.last_modified is None:
                deleted_at = datetime.datetime.now(datetime.UTC)
            else:
                deleted_at = parameter.last_modified
            snapshot = await self._read(
                parameter.name,
                with_value=effective_payload(route, parameter.value_type) == "value",
                deleted_at=deleted_at,
            )
            if spec_key is None or trigger == "manual":
                post_event(
                    "Normal",
                    "VersionResolved",
                    f"pushing the current state of {snapshot.name}: {snapshot.operation} v{snapshot.version} "
                    f"of {canonical_time(snapshot.last_modified)}",
                )
            elif snapshot.key > spec_key:
                await self._supersede_by_store(
                    namespace, name, route, scope, snapshot, current, generation, post_event
                )
                return

        # A targeted repair (anti-entropy) runs beside the rollouts of its parameter, never superseding one.
        run_key = (namespace, route.name, parameter.name if only is None else f"{parameter.name} repair")
        cancel = asyncio.Event()
        mine = _Running(key=snapshot.key, name=name, cancel=cancel)
        other = self._running.get(run_key)
        if other is not None and other.name != name:
            if other.key > snapshot.key:
                await self._mark_superseded(namespace, name, other.name, current, generation, post_event)
                return
            other.superseded_by = name
            other.cancel.set()
        self._running[run_key] = mine
        if only is None:
            await self._supersede_halted(namespace, route, parameter.name, snapshot.key, name, post_event)
        try:
            await self._fan_out(
                namespace=namespace,
                name=name,
                route=route,
                scope=scope,
                snapshot=snapshot,
                current=current,
                generation=generation,
                post_event=post_event,
                running=mine,
                retry=retry,
                only=only,
                resume=resume,
            )
        finally:
            if self._running.get(run_key) is mine:
                del self._running[run_key]

    async def _bake(
        self, waving: RolloutSpec, *, index: int, of: int, cancel: asyncio.Event
    ) -> tuple[str, str] | None:
        """Wait bakeSeconds after a wave; the health gate (if any) must answer 2xx throughout."""
        loop = asyncio.get_running_loop()
        until = loop.time() + waving.bake_seconds
        while True:
            if waving.health_gate is not None:
                try:
                    ok = await asyncio.to_thread(self._health_gates.probe, waving.health_gate)
                except HealthGateRefused as refused:
                    return ("HealthGateNotAllowed", f"{refused}; later waves not started")
                if not ok:
                    return (
                        "HealthGateFailed",
                        f"the health gate failed while wave {index}/{of} baked; later waves not started",
                    )
            left = until - loop.time()
            if left <= 0 or cancel.is_set():
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cancel.wait(), timeout=min(left, 1.0))

    async def abort(
        self,
        *,
        namespace: str,
        name: str,
        current: Mapping[str, Any],
        generation: int,
        post_event: EventPoster,
    ) -> None:
        """A Halted rollout is given up: Failed, with an Aborted condition; instances keep what they hold."""
        if current.get("phase") != HALTED:
            return
        message = "aborted by request while halted; instances not yet refreshed keep their version"
        await self._finish(
            namespace=namespace,
            name=name,
            phase=status.FAILED,
            generation=generation,
            existing=current,
            extra={},
            conditions=[
                status.condition(
                    "Ready", status=False, reason="Aborted", message=message, generation=generation
                ),
                status.condition(
                    "Halted", status=False, reason="Aborted", message=message, generation=generation
                ),
            ],
        )
        post_event("Warning", "Aborted", message)

    async def _mark_superseded(
        self,
        namespace: str,
        name: str,
        by: str,
        current: Mapping[str, Any],
        generation: int,
        post_event: EventPoster,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        message = f"a newer rollout {by} took over"
        await self._finish(
            namespace=namespace,
            name=name,
            phase=status.SUPERSEDED,
            generation=generation,
            existing=current,
            extra={**(extra or {}), "supersededBy": by},
            conditions=[
                status.condition(
                    "Ready", status=False, reason="Superseded", message=message, generation=generation
                )
            ],
        )
        post_event("Normal", "Superseded", message)

    async def _supersede_halted(
        self,
        namespace: str,
        route: Route,
        parameter_name: str,
        key: VersionKey,
        successor: str,
        post_event: EventPoster,
    ) -> None:
        """Older Halted rollouts of this parameter are Superseded by this one.

        A Halted rollout waits for a person; once a newer version is rolling out, resuming it could only
        push a value the instances have replaced (they would answer Stale), and leaving it Halted would
        keep it in front of whoever watches `kubectl get cfgr`. Best effort: a failed list is logged and
        the rollout goes on.
        """
        selector = refresh_selector(route=route.name, parameter_name=parameter_name, halted=True)
        try:
            items = await self._blocking.call(
                self._kube.list, kube.REFRESHES, namespace, label_selector=selector
            )
        except KubeError as error:
            logger.warning("cannot look for Halted rollouts of %s: %s", parameter_name, error)
            return
        for item in items:
            current = item.get("status") or {}
            spec = ConfigRefreshSpec.from_body(item.get("spec") or {})
            older = spec.parameter
            name = str((item.get("metadata") or {}).get("name", ""))
            if (
                current.get("phase") != HALTED
                or name == successor
                or older.name != parameter_name
                or spec.targets
                or older.key is None
                or older.key >= key
            ):
                continue
            generation = int((item.get("metadata") or {}).get("generation") or 1)
            await self._mark_superseded(namespace, name, successor, current, generation, lambda *_: None)
            post_event("Normal", "TookOver", f"the Halted rollout {name} of an older version is Superseded")

    async def _supersede_by_store(
        self,
        namespace: str,
        name: str,
        route: Route,
        scope: Mapping[str, str],
        snapshot: ParameterSnapshot,
        current: Mapping[str, Any],
        generation: int,
        post_event: EventPoster,
    ) -> None:
        """Parameter Store already holds a newer version: make sure it has a rollout, and step aside."""
        body = refresh_body(route=route, scope=scope, snapshot=snapshot, trigger="resync", event=None)
        successor = str(body["metadata"]["name"])
        if route.refresh.payload == "value":
            self._values.put(namespace, successor, snapshot)
        try:
            await self._blocking.call(self._kube.create_refresh, namespace, body)
        except KubeError as error:
            raise RetryLater(f"cannot create the successor rollout: {error}", delay=5) from None
        await self._mark_superseded(namespace, name, successor, current, generation, post_event)

    async def _fan_out(
        self,
        *,
        namespace: str,
        name: str,
        route: Route,
        scope: Mapping[str, str],
        snapshot: ParameterSnapshot,
        current: Mapping[str, Any],
        generation: int,
        post_event: EventPoster,
        running: _Running,
        retry: int,
        only: set[str] | None = None,
        resume: bool = False,
    ) -> None:
        started_mono = time.monotonic()
        try:
            targets = await discover_instances(
                self._clients.servicediscovery,
                namespace=route.cloud_map_namespace,
                service=route.cloud_map_service,
                query_parameters=route.query_for(scope),
                default_port=route.refresh.port,
            )
        except (DiscoveryError, RouteError) as error:
            if isinstance(error, DiscoveryError) and retry < DISCOVERY_RETRIES:
                raise RetryLater(f"{error} (will retry)", delay=2.0 * (retry + 1)) from None
            await self._finish(
                namespace=namespace,
                name=name,
                phase=status.FAILED,
                generation=generation,
                existing=current,
                extra={"targets": 0, "refreshed": 0, "failed": 0, "stale": 0, "progress": "0/0"},
                conditions=[
                    status.condition(
                        "Ready",
                        status=False,
                        reason="DiscoveryFailed",
                        message=str(error),
                        generation=generation,
                    )
                ],
            )
            post_event("Warning", "Failed", f"DiscoveryFailed: {error}")
            return
        targets, foreign = self._routing.owned_targets(route, targets)
        if foreign:
            logger.warning(
                "ConfigRefresh %s/%s: %d instance(s) of %s/%s belong to another namespace; skipped",
                namespace,
                name,
                foreign,
                route.cloud_map_namespace,
                route.cloud_map_service,
            )
            post_event(
                "Warning",
                "ForeignInstancesSkipped",
                f"{foreign} instance(s) of Cloud Map {route.cloud_map_namespace}/{route.cloud_map_service} "
                f"are not owned by namespace {namespace} (attribute k8s-namespace) and were not refreshed",
            )
        if only is not None:
            targets = [target for target in targets if target.instance_id in only]

        if not targets:
            await self._finish(
                namespace=namespace,
                name=name,
                phase=status.SUCCEEDED,
                generation=generation,
                existing=current,
                extra={
                    "targets": 0,
                    "refreshed": 0,
                    "failed": 0,
                    "stale": 0,
                    "progress": "0/0",
                    "instances": [],
                },
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
            post_event("Warning", "NoTargets", "no healthy instance to refresh")
            return

        outcomes: dict[str, TargetOutcome] = status.outcomes_from_status(current, targets)
        resumed = bool(outcomes) or current.get("phase") == status.IN_PROGRESS
        started_at = str(current.get("startedAt") or status.now_text())
        cap = self._settings.instances_cap
        dirty = asyncio.Event()
        waving = route.rollout if only is None else None
        ends = plan_waves(waving.waves, len(targets)) if waving is not None else [len(targets)]
        wave_state: dict[str, Any] = {"waves": ends, "currentWave": 1} if waving is not None else {}
        first_wave = int(current.get("currentWave") or 0) + 1 if resume else 1
        if first_wave > 1:
            # The waves before a resume are settled: their failures stay failures (not retried, counted).
            earlier = {
                target.instance_id: target for target in targets[: ends[min(first_wave, len(ends)) - 2]]
            }
            for entry in current.get("instances") or []:
                target = earlier.get(str(entry.get("id")))
                if target is not None and entry.get("result") == Result.FAILED.value:
                    outcomes.setdefault(
                        target.instance_id,
                        TargetOutcome(
                            target,
                            Result.FAILED,
                            int(entry.get("version") or 0),
                            int(entry.get("attempts") or 0),
                            entry.get("error"),
                            None,
                        ),
                    )

        def snapshot_status() -> dict[str, Any]:
            counts = status.count(targets, outcomes)
            entries, truncated = status.instance_entries(targets, outcomes, cap=cap)
            return {
                "targets": counts.targets,
                "refreshed": counts.refreshed,
                "failed": counts.failed,
                "stale": counts.stale,
                "progress": counts.progress,
                "instances": entries,
                "instancesTruncated": truncated,
                **wave_state,
            }

        # Sent while the fan-out starts (not before it): the writer and the final patch wait for it.
        initial = asyncio.create_task(
            self._patch(
                namespace,
                name,
                {
                    "phase": status.IN_PROGRESS,
                    "startedAt": started_at,
                    "observedGeneration": generation,
                    **snapshot_status(),
                    "conditions": status.merge_conditions(
                        current.get("conditions") or [],
                        [
                            status.condition(
                                "Ready",
                                status=False,
                                reason="InProgress",
                                message="rollout running",
                                generation=generation,
                            )
                        ],
                    ),
                },
            )
        )
        post_event(
            "Normal",
            "Started",
            f"{'resumed' if resumed else 'started'} refresh of {snapshot.name} v{snapshot.version} "
            f"on {len(targets)} instance(s)",
        )

        def on_outcome(outcome: TargetOutcome) -> None:
            outcomes[outcome.target.instance_id] = outcome
            dirty.set()

        writer_done = asyncio.Event()

        async def progress_writer() -> None:
            # Never cancelled while a patch is in flight: the patch runs on a thread and would land after
            # the final status, rolling `progress` back. Stopping is cooperative (writer_done).
            interval = self._settings.status_patch_interval_seconds
            await initial
            while True:
                await dirty.wait()
                if writer_done.is_set():
                    return
                dirty.clear()
                await self._patch(namespace, name, snapshot_status())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(writer_done.wait(), timeout=interval)
                if writer_done.is_set():
                    return

        writer = asyncio.create_task(progress_writer())
        request = build_request(
            refresh_id=name,
            snapshot=snapshot,
            payload=effective_payload(route, snapshot.value_type),
            scope=scope,
        )
        policy = self._policy(route)
        halted: tuple[str, str] | None = None
        try:
            for index, end in enumerate(ends, start=1):
                if index < first_wave:
                    continue
                wave = targets[ends[index - 2] if index > 1 else 0 : end]
                if waving is not None:
                    wave_state["currentWave"] = index
                    dirty.set()
                final = await self._fanout.run(
                    targets=wave,
                    request=request,
                    policy=policy,
                    already_done=dict(outcomes),
                    on_outcome=on_outcome,
                    cancel=running.cancel,
                    started_at=parse_time(started_at).timestamp()
                    if resumed and not resume and index == first_wave
                    else None,
                )
                for outcome in final:
                    outcomes[outcome.target.instance_id] = outcome
                if running.cancel.is_set():
                    break
                if waving is None or index == len(ends):
                    continue
                wave_failed = status.count(wave, outcomes).failed
                if wave_failed > waving.failure_threshold * len(wave):
                    halted = (
                        "WaveFailed",
                        f"wave {index}/{len(ends)}: {wave_failed}/{len(wave)} instance(s) failed, above the "
                        f"failure threshold {waving.failure_threshold:g}; later waves not started",
                    )
                    break
                halted = await self._bake(waving, index=index, of=len(ends), cancel=running.cancel)
                if halted is not None:
                    break
        finally:
            writer_done.set()
            dirty.set()
            await writer

        if halted is not None and not running.cancel.is_set():
            reason, message = halted
            await self._label_halted(namespace, name, True)
            await self._patch(
                namespace,
                name,
                {
                    "phase": HALTED,
                    "startedAt": started_at,
                    "observedGeneration": generation,
                    **snapshot_status(),
                    "conditions": status.merge_conditions(
                        current.get("conditions") or [],
                        [
                            status.condition(
                                "Ready", status=False, reason=reason, message=message, generation=generation
                            ),
                            status.condition(
                                "Halted", status=True, reason=reason, message=message, generation=generation
                            ),
                        ],
                    ),
                },
                must=True,
            )
            self._values.fan_out_done(namespace, name)  # no more fan-out until a person resumes it
            metrics.ROLLOUTS.labels(HALTED).inc()
            post_event("Warning", HALTED, message)
            logger.warning("ConfigRefresh %s/%s halted: %s", namespace, name, message)
            return

        if running.cancel.is_set() and running.superseded_by:
            for instance_id, outcome in list(outcomes.items()):
                if outcome.error == CANCELLED_ERROR:
                    del outcomes[instance_id]
            await self._mark_superseded(
                namespace,
                name,
                running.superseded_by,
                current,
                generation,
                post_event,
                extra={**snapshot_status(), "startedAt": started_at},
            )
            return

        counts = status.count(targets, outcomes)
        phase = status.final_phase(counts)
        extra = snapshot_status()
        acks = [
            o.acknowledged_at
            for o in outcomes.values()
            if o.acknowledged_at is not None and o.result.acknowledged
        ]
        if acks:
            latency = max(0.0, max(acks) - snapshot.last_modified.timestamp())
            extra["latencyMs"] = round(latency * 1000)
            metrics.COMMIT_TO_APPLIED.observe(latency)
        metrics.ROLLOUT_DURATION.observe(time.monotonic() - started_mono)
        failed = status.failed_ids(targets, outcomes)
        if phase == status.SUCCEEDED:
            message = f"{counts.refreshed}/{counts.targets} instances hold v{snapshot.version}"
            conditions = [
                status.condition(
                    "Ready", status=True, reason="Succeeded", message=message, generation=generation
                )
            ]
        else:
            first = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
            errors = {o.error for o in outcomes.values() if not o.result.acknowledged and o.error}
            reason = "AllTargetsFailed" if phase == status.FAILED else "SomeTargetsFailed"
            message = f"{counts.failed}/{counts.targets} failed: {first}"
            if phase == status.FAILED and errors:
                message += f" ({sorted(errors)[0][:200]})"
            conditions = [
                status.condition("Ready", status=False, reason=reason, message=message, generation=generation)
            ]
        extra["startedAt"] = started_at
        await self._finish(
            namespace=namespace,
            name=name,
            phase=phase,
            generation=generation,
            existing=current,
            extra=extra,
            conditions=conditions,
        )
        post_event("Normal" if phase == status.SUCCEEDED else "Warning", phase, message)
        logger.info("ConfigRefresh %s/%s %s: %s", namespace, name, phase, message)
