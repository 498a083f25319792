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
- Status is flushed at most every ``status_debounce`` seconds per route, so a rollout of 100 pods is a
  handful of status writes, not 300.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from refresh_operator.podsync import metrics
from refresh_operator.podsync.cloudmap import CloudMapError, InstanceNotFound, ServiceRef
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
    InstanceWriter,
    Outcome,
    Register,
    SetHealth,
    execute,
    plan_gone,
    plan_pod,
    plan_route,
)
from refresh_operator.podsync.status import (
    SyncState,
    apply_body,
    build_condition,
    existing_condition,
    now_rfc3339,
)
from refresh_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

RouteKey = tuple[str, str]
EventSink = Callable[[Mapping[str, Any], str, str], None]
"""(route body, reason, message) → post a Warning Event on the route."""


class CloudMapApi(InstanceWriter, Protocol):
    """What the controller needs from Cloud Map (``cloudmap.CloudMap`` implements it)."""

    async def resolve_service(self, namespace_name: str, service_name: str) -> ServiceRef: ...

    async def list_instances(self, service_id: str) -> dict[str, ActualInstance]: ...


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
    """Something changed since the counts were last computed for a status write (see _schedule_flush)."""
    seed_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


def _shares(one: RouteSync, other: RouteSync) -> bool:
    """Whether two routes can back the same instances: same Cloud Map service, same Kubernetes namespace."""
    return one.target == other.target and one.namespace == other.namespace


def _action_name(action: Action) -> str:
    if isinstance(action, Register):
        return "register"
    if isinstance(action, SetHealth):
        return "set_health"
    return "deregister"


class PodSyncController:
    """The podSync engine behind the kopf handlers (see module docstring)."""

    def __init__(
        self,
        *,
        settings: OperatorSettings,
        cloudmap: CloudMapApi,
        kube: Kube,
        events: EventSink,
        status_debounce: float = 0.5,
    ) -> None:
        self._settings = settings
        self._cloudmap = cloudmap
        self._kube = kube
        self._events = events
        self._debounce = status_debounce
        self._routes: dict[RouteKey, RouteState] = {}
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
            self._schedule_flush(key)
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
                self._schedule_flush(key)
            elif self._status_overwritten(state):
                # Someone else's write (e.g. a merge patch of the whole conditions list from a stale copy)
                # replaced what podSync wrote: write it again.
                state.written_counts = None
                self._schedule_flush(key)

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
            if other is not state and other.route is not None and _shares(other.route, route)
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
        self._schedule_flush(key)

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
                s.route for s in self._routes.values() if s.route is not None and _shares(s.route, route)
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
            actual = await self._cloudmap.list_instances(service.service_id)
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
        await self._flush_now(key)

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
                state.known = await self._cloudmap.list_instances(service.service_id)
                state.seeded = True
            return service

    async def _run(
        self, state: RouteState, service: ServiceRef, actions: Iterable[Action], *, source: str
    ) -> list[Outcome]:
        planned = list(actions)
        if not planned:
            return []
        outcomes = await execute(self._cloudmap, service_id=service.service_id, actions=planned)
        for outcome in outcomes:
            action = outcome.action
            metrics.ACTIONS.labels(_action_name(action), source, "error" if outcome.error else "ok").inc()
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
        return outcomes

    def _record_error(self, state: RouteState, error: CloudMapError) -> None:
        state.error = error
        metrics.ERRORS.labels(error.reason).inc()
        log.warning("podSync: %s: %s", error.reason, error.message)

    def counts(self, key: RouteKey) -> tuple[int, int]:
        """(registered, healthy) instances of the route's pods as podSync last saw them."""
        state = self._routes.get(key)
        if state is None:
            return (0, 0)
        if state.route is None:
            return (0, 0)
        namespace = state.route.namespace
        mine = [
            state.known[instance_id]
            for instance_id in state.pods
            if instance_id in state.known and state.known[instance_id].owned_by(namespace)
        ]
        return (len(mine), sum(1 for instance in mine if instance.healthy))

    def _schedule_flush(self, key: RouteKey) -> None:
        """Write the route's status within the debounce. A change that lands while a flush is already
        under way (its counts computed, its write in flight) marks the route dirty, and that flush loops
        once more: without it, the registrations of a burst of pods that follow the first write were never
        written until the next reconcile (the INSTANCES column read 0 while 20 pods were registered)."""
        state = self._routes.get(key)
        if state is None:
            return
        state.dirty = True
        if state.flush is not None and not state.flush.done():
            return
        state.flush = asyncio.create_task(self._flush_later(key))

    async def _flush_later(self, key: RouteKey) -> None:
        while True:
            await asyncio.sleep(self._debounce)
            state = self._routes.get(key)
            if state is None or not state.dirty:
                return
            state.dirty = False
            await self._flush_now(key)

    async def _flush_now(self, key: RouteKey) -> None:
        """Write the route's podSync status (and an Event when a new error appears); never raises."""
        state = self._routes.get(key)
        if state is None:
            return
        registered, healthy = self.counts(key)
        route_label = f"{key[0]}/{key[1]}"
        metrics.INSTANCES.labels(route_label, "registered").set(registered)
        metrics.INSTANCES.labels(route_label, "healthy").set(healthy)
        error = state.error
        if error is None and state.route is not None:
            sync = SyncState(
                registered,
                healthy,
                ok=True,
                reason="Synced",
                message=f"{registered} pods registered ({healthy} healthy) in Cloud Map service "
                f"{state.route.cloudmap_namespace}/{state.route.cloudmap_service}",
            )
        else:
            reason = error.reason if error is not None else "InvalidPodSync"
            message = error.message if error is not None else (state.invalid or "invalid podSync")
            sync = SyncState(registered, healthy, ok=False, reason=reason, message=message)
            if state.last_event != (sync.reason, sync.message):
                state.last_event = (sync.reason, sync.message)
                try:
                    self._events(state.body, sync.reason, sync.message)
                except Exception:
                    log.exception("podSync could not post an Event on route %s/%s", *key)
        if sync.ok:
            state.last_event = None
        generation = int((state.body.get("metadata") or {}).get("generation") or 0)
        condition = build_condition(
            sync, generation=generation, previous=state.last_condition, now=now_rfc3339()
        )
        comparable_old = {k: v for k, v in (state.last_condition or {}).items() if k != "lastTransitionTime"}
        comparable_new = {k: v for k, v in condition.items() if k != "lastTransitionTime"}
        if comparable_old == comparable_new and getattr(state, "written_counts", None) == (
            registered,
            healthy,
        ):
            return
        try:
            await self._kube.apply_route_status(
                key[0], key[1], apply_body(namespace=key[0], name=key[1], state=sync, condition=condition)
            )
        except Exception as error:
            log.warning("podSync could not write status of route %s/%s: %s", key[0], key[1], error)
            return
        state.last_condition = condition
        state.written_counts = (registered, healthy)
