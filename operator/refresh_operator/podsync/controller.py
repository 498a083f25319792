"""podSync's state and decisions over time: route index, what Cloud Map holds, locks, status flushes.

One ``PodSyncController`` per operator process (kopf's ``memo.podsync``). It is fed by three kopf handlers
(ConfigRoute events, pod events, the per-route reconcile timer) and never raises into them: a failure
becomes the route's ``CloudMapSynced=False`` condition and a Warning Event, and the next event or
reconcile tries again.

Why the pieces:

- ``known`` per route is the last full ListInstances, updated by every write podSync makes. The fast path
  compares a pod against it, so a pod event that changes nothing podSync cares about (most status
  updates) costs no Cloud Map call. A route is seeded with one listing before its first write, so a
  restarted operator still marks a not-Ready pod UNHEALTHY at once and never touches an instance that
  lacks ``managed-by``.
- Writes for one pod are serialised by a per-pod lock; different pods proceed in parallel.
- Everything is keyed by Cloud Map instance id (``<namespace>.<pod>``, see ``model.instance_id_for``),
  and a route only ever acts on instances its own namespace owns: routes of other namespaces sharing the
  service (in this operator or in another release of it) are never seen as drift.
- Status is written by ``flusher.StatusFlusher``, debounced per route (``status_debounce`` seconds).

Per-route state and the bookkeeping of writes live in ``state``; the status writes in ``flusher``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from refresh_operator.cloudmap import CloudMapError, Instance, InstanceNotFound, ServiceRef
from refresh_operator.podsync import metrics
from refresh_operator.podsync.flusher import StatusFlusher
from refresh_operator.podsync.kube import Kube
from refresh_operator.podsync.model import (
    InvalidPodSync,
    PodIntent,
    RouteSync,
    instance_id_for,
    pod_intent,
    route_sync_from_body,
    selects,
)
from refresh_operator.podsync.reconcile import (
    Action,
    ActualInstance,
    Deregister,
    InstanceRegistry,
    Outcome,
    execute,
    plan_gone,
    plan_pod,
    plan_route,
)
from refresh_operator.podsync.state import (
    EventSink,
    RouteKey,
    RouteState,
    counts,
    record,
    shares,
)
from refresh_operator.podsync.status import existing_condition
from refresh_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


def _actual(instances: Mapping[str, Instance]) -> dict[str, ActualInstance]:
    return {instance_id: ActualInstance.of(instance) for instance_id, instance in instances.items()}


class PodSyncController:
    """The podSync engine behind the kopf handlers (see module docstring)."""

    def __init__(
        self,
        *,
        settings: OperatorSettings,
        cloudmap: InstanceRegistry,
        kube: Kube,
        events: EventSink,
        status_debounce: float = 0.5,
    ) -> None:
        self._settings = settings
        self._cloudmap = cloudmap
        self._kube = kube
        self._routes: dict[RouteKey, RouteState] = {}
        self._flusher = StatusFlusher(self._routes, kube=kube, events=events, debounce=status_debounce)
        self._pod_routes: dict[tuple[str, str], set[RouteKey]] = {}
        self._pod_locks: dict[tuple[RouteKey, str], asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()

    # ---- routes -------------------------------------------------------------------------------------

    def route_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Keep the index of podSync routes in step with ConfigRoute watch events."""
        meta = body.get("metadata") or {}
        key: RouteKey = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if event_type == "DELETED":
            self._forget_route(key)
            return
        try:
            route = route_sync_from_body(body)
        except InvalidPodSync as error:
            state = self._routes.setdefault(key, RouteState(route=None, body=body))
            state.route, state.body, state.invalid = None, body, str(error)
            state.error = CloudMapError("InvalidPodSync", str(error))
            self._flusher.schedule(key)
            return
        if route is None:
            self._forget_route(key)
            return
        known_state = self._routes.get(key)
        if known_state is None:
            state = self._routes[key] = RouteState(route=route, body=body)
            state.last_condition = existing_condition(body)
        else:
            state = known_state
            if state.route is None or state.route.target != route.target:
                self._release(state)
                state.service, state.seeded, state.known = None, False, {}
            state.route, state.body = route, body
            if state.invalid is not None:
                state.invalid, state.error = None, None
                self._flusher.schedule(key)
            elif self._status_overwritten(state):
                # Someone else's write (e.g. a merge patch of the whole conditions list from a stale copy)
                # replaced what podSync wrote: write it again.
                state.written_counts = None
                self._flusher.schedule(key)

    @staticmethod
    def _status_overwritten(state: RouteState) -> bool:
        if state.written_counts is None or state.last_condition is None:
            return False
        status = state.body.get("status") or {}
        current = existing_condition(state.body) or {}
        fields = ("status", "reason", "message")
        return (status.get("registered"), status.get("healthy")) != state.written_counts or any(
            current.get(f) != state.last_condition.get(f) for f in fields
        )

    def _forget_route(self, key: RouteKey) -> None:
        state = self._routes.pop(key, None)
        if state is None:
            return
        if state.flush is not None:
            state.flush.cancel()
        for routes in self._pod_routes.values():
            routes.discard(key)
        self._release(state)
        for kind in ("registered", "healthy"):
            with contextlib.suppress(KeyError):
                metrics.INSTANCES.remove(f"{key[0]}/{key[1]}", kind)

    def _release(self, state: RouteState) -> None:
        """Deregister, in the background, the instances of a route that stops syncing to a service.

        Only instances podSync registered for this route's pods, and only those no other podSync route
        targeting the same service also selects; a failure is logged (the route is gone, there is no
        condition left to put it on) and the instances stay until someone removes them.
        """
        if state.route is None or state.service is None:
            return
        route, service = state.route, state.service
        others = {
            instance_id
            for other in self._routes.values()
            if other is not state and other.route is not None and shares(other.route, route)
            for instance_id in other.pods
        }
        mine = state.pods - others
        actions: list[Action] = [
            Deregister(instance.instance_id)
            for instance in sorted(state.known.values(), key=lambda instance: instance.instance_id)
            if instance.owned_by(route.namespace)
            and (instance.instance_id in mine or instance.successor in mine)
        ]
        if not actions:
            return

        async def release() -> None:
            outcomes = await execute(self._cloudmap, service_id=service.service_id, actions=actions)
            for outcome in outcomes:
                metrics.ACTIONS.labels("deregister", "release", "error" if outcome.error else "ok").inc()
                if outcome.error is not None:
                    log.warning(
                        "podSync could not deregister %s: %s", outcome.action.instance_id, outcome.error
                    )

        task = asyncio.create_task(release())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def routes(self) -> list[RouteSync]:
        return [state.route for state in self._routes.values() if state.route is not None]

    # ---- pods (fast path) ---------------------------------------------------------------------------

    def concerns(self, pod: Mapping[str, Any]) -> bool:
        """Whether a pod is (or was) selected by a podSync route: the only pods worth a handler call."""
        meta = pod.get("metadata") or {}
        if (str(meta.get("namespace", "")), str(meta.get("name", ""))) in self._pod_routes:
            return True
        return any(state.route is not None and selects(state.route, pod) for state in self._routes.values())

    async def pod_event(self, event_type: str | None, pod: Mapping[str, Any]) -> None:
        """Apply one pod watch event to every podSync route that selects (or selected) the pod."""
        meta = pod.get("metadata") or {}
        pod_key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        gone = event_type == "DELETED"
        matching: set[RouteKey] = set()
        if not gone:
            matching = {
                key
                for key, state in self._routes.items()
                if state.route is not None and selects(state.route, pod)
            }
        previous = self._pod_routes.get(pod_key, set())
        if matching:
            self._pod_routes[pod_key] = matching
        else:
            self._pod_routes.pop(pod_key, None)
        involved = sorted(matching | previous)
        await asyncio.gather(*(self._sync_pod(key, pod, *pod_key, key in matching) for key in involved))

    async def _sync_pod(
        self, key: RouteKey, pod: Mapping[str, Any], namespace: str, pod_name: str, selected: bool
    ) -> None:
        state = self._routes.get(key)
        if state is None or state.route is None:
            return
        route = state.route
        instance_id = instance_id_for(namespace, pod_name)
        state.touched_at[instance_id] = time.monotonic()
        lock = self._pod_locks.setdefault((key, instance_id), asyncio.Lock())
        async with lock:
            try:
                service = await self._ensure_ready(state)
                # Registered by an older podSync under the bare pod name: moved to the new id.
                legacy = [
                    instance
                    for instance in (state.known.get(pod_name),)
                    if instance is not None and instance.successor == instance_id
                ]
                intent: PodIntent | None = pod_intent(route, pod) if selected else None
                if intent is None:
                    state.pods.discard(instance_id)
                    actions = plan_gone(state.known.get(instance_id), route.namespace, legacy)
                else:
                    state.pods.add(instance_id)
                    actions = plan_pod(intent, state.known.get(instance_id), legacy)
                outcomes = await self._run(state, service, actions, source="event")
                retry = [o for o in outcomes if isinstance(o.error, InstanceNotFound)]
                if retry and intent is not None:
                    # Someone removed it behind our back: plan again from "absent".
                    state.known.pop(instance_id, None)
                    outcomes = await self._run(state, service, plan_pod(intent, None), source="event")
                failed = [o.error for o in outcomes if o.error is not None]
                if failed:
                    raise failed[0]
                if outcomes and state.error is not None and state.error.reason != "InvalidPodSync":
                    state.error = None
            except CloudMapError as error:
                self._record_error(state, error)
            except Exception as error:  # never crash the handler: report it on the route instead
                log.exception("podSync failed for pod %s/%s of route %s/%s", namespace, pod_name, *key)
                self._record_error(state, CloudMapError("PodSyncFailed", f"{type(error).__name__}: {error}"))
        if not selected and not lock.locked():
            self._pod_locks.pop((key, instance_id), None)
        self._flusher.schedule(key)

    # ---- reconcile (slow path) ----------------------------------------------------------------------

    async def reconcile(self, key: RouteKey) -> None:
        """Repair drift both ways for one route from a fresh pod list and a fresh ListInstances."""
        state = self._routes.get(key)
        if state is None or state.route is None:
            return
        route = state.route
        started = time.monotonic()
        try:
            service = await self._service(state, force=True)
            # Only routes of the same namespace can back this namespace's instances.
            siblings = [
                s.route for s in self._routes.values() if s.route is not None and shares(s.route, route)
            ]
            intents: dict[str, PodIntent] = {}
            elsewhere: set[str] = set()
            for sibling in siblings:
                for pod in await self._kube.list_pods(sibling.namespace, sibling.match_labels):
                    if pod.get("metadata", {}).get("namespace") != sibling.namespace or not selects(
                        sibling, pod
                    ):
                        continue
                    intent = pod_intent(sibling, pod)
                    if sibling.key == route.key:
                        intents[intent.instance_id] = intent
                    else:
                        elsewhere.add(intent.instance_id)
            actual = _actual(await self._cloudmap.list_instances(service.service_id))
            # A pod whose event arrived while we listed is the event path's: our view of it may be stale
            # (a deleted pod brought back, a pod turned not-Ready marked HEALTHY again, a new one removed).
            touched = {name for name, at in state.touched_at.items() if at >= started}
            planned = plan_route(
                namespace=route.namespace, intents=intents, actual=actual, backed_elsewhere=elsewhere
            )
            actions = [
                action
                for action in planned
                if action.instance_id not in touched
                and not (isinstance(action, Deregister) and action.successor in touched)
            ]
            known = {name: instance for name, instance in actual.items() if name not in touched}
            known.update({name: state.known[name] for name in touched if name in state.known})
            state.known = known
            state.seeded = True
            state.pods = {name for name in intents if name not in touched} | (state.pods & touched)
            state.touched_at = {name: at for name, at in state.touched_at.items() if at >= started}
            outcomes = await self._run(state, service, actions, source="reconcile")
            failed = [o.error for o in outcomes if o.error is not None]
            if failed:
                raise failed[0]
            state.error = None
        except CloudMapError as error:
            self._record_error(state, error)
        except Exception as error:
            log.exception("podSync reconcile failed for route %s/%s", *key)
            self._record_error(state, CloudMapError("PodSyncFailed", f"{type(error).__name__}: {error}"))
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        await self._flusher.now(key)

    # ---- helpers ------------------------------------------------------------------------------------

    async def _service(self, state: RouteState, *, force: bool = False) -> ServiceRef:
        assert state.route is not None
        now = time.monotonic()
        stale = now - state.service_checked_at > self._settings.podsync_interval_seconds
        if state.service is None or force or stale:
            try:
                state.service = await self._cloudmap.resolve_service(*state.route.target)
            except CloudMapError:
                state.service, state.seeded = None, False
                raise
            state.service_checked_at = now
        return state.service

    async def _ensure_ready(self, state: RouteState) -> ServiceRef:
        """The route's service, and the route seeded with one listing of it before any write."""
        async with state.seed_lock:
            service = await self._service(state)
            if not state.seeded:
                state.known = _actual(await self._cloudmap.list_instances(service.service_id))
                state.seeded = True
            return service

    async def _run(
        self, state: RouteState, service: ServiceRef, actions: Iterable[Action], *, source: str
    ) -> list[Outcome]:
        planned = list(actions)
        if not planned:
            return []
        outcomes = await execute(self._cloudmap, service_id=service.service_id, actions=planned)
        record(state, outcomes, source=source)
        return outcomes

    def _record_error(self, state: RouteState, error: CloudMapError) -> None:
        state.error = error
        metrics.ERRORS.labels(error.reason).inc()
        log.warning("podSync: %s: %s", error.reason, error.message)

    def counts(self, key: RouteKey) -> tuple[int, int]:
        """(registered, healthy) instances of the route's pods as podSync last saw them."""
        state = self._routes.get(key)
        return (0, 0) if state is None else counts(state)
