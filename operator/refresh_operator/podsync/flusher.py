"""podSync's status writes: a route's ``CloudMapSynced`` condition and counts, debounced per route.

Status is flushed at most every ``debounce`` seconds per route, so a rollout of 100 pods is a handful of
status writes, not 300; a write that would change nothing is skipped, and a new error is also posted as a
Warning Event on the route (once per distinct reason and message).
"""

from __future__ import annotations

import asyncio
import logging

from refresh_operator.podsync import metrics
from refresh_operator.podsync.kube import Kube
from refresh_operator.podsync.state import EventSink, RouteKey, RouteState, counts
from refresh_operator.podsync.status import SyncState, apply_body, build_condition, now_rfc3339

log = logging.getLogger(__name__)


class StatusFlusher:
    """Writes the status of the routes in ``routes`` (the controller's own dict, shared)."""

    def __init__(
        self, routes: dict[RouteKey, RouteState], *, kube: Kube, events: EventSink, debounce: float
    ) -> None:
        self._routes = routes
        self._kube = kube
        self._events = events
        self._debounce = debounce

    def schedule(self, key: RouteKey) -> None:
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
        state.flush = asyncio.create_task(self._later(key))

    async def _later(self, key: RouteKey) -> None:
        while True:
            await asyncio.sleep(self._debounce)
            state = self._routes.get(key)
            if state is None or not state.dirty:
                return
            state.dirty = False
            await self.now(key)

    async def now(self, key: RouteKey) -> None:
        """Write the route's podSync status (and an Event when a new error appears); never raises."""
        state = self._routes.get(key)
        if state is None:
            return
        registered, healthy = counts(state)
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
        if comparable_old == comparable_new and state.written_counts == (registered, healthy):
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
