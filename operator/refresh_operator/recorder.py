"""The one place the operator creates ConfigRefresh objects: the consumer, supersession, resync and
anti-entropy all record a change through `Recorder.record`.

The object itself is built by the API package (`configrefresh_api.new_refresh`, which `configctl refresh`
uses too); this module turns a `ParameterSnapshot` into it, hands the value to the rollout through the
`ValueCache` (payload mode `value`: one GetParameter per change, not one per rollout), and creates the
object, AlreadyExists meaning a duplicate (another delivery, another replica, the resync) and nothing
worse. A change has three forms in the operator: the event, the snapshot, and this typed ConfigRefresh.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from configrefresh_api.naming import refresh_name
from configrefresh_api.phases import Trigger
from configrefresh_api.refresh import ConfigRefresh, ParameterRef, Source, new_refresh
from configrefresh_api.versions import Operation
from refresh_operator import metrics
from refresh_operator.aws import Blocking
from refresh_operator.events import ParameterChangeEvent
from refresh_operator.kube import Kube, KubeError
from refresh_operator.parameter_store import ParameterSnapshot
from refresh_operator.routes import Route
from refresh_operator.values import ValueCache


@dataclasses.dataclass(frozen=True)
class Recorded:
    name: str
    created: bool
    """False: the object already existed (a duplicate), which is fine."""


def refresh_for(
    route: Route,
    snapshot: ParameterSnapshot,
    *,
    trigger: Trigger,
    scope: Mapping[str, str],
    event: ParameterChangeEvent | None = None,
    targets: Sequence[str] = (),
    repair: str | None = None,
) -> ConfigRefresh:
    """The ConfigRefresh of `snapshot` on `route` (pure). `repair` (anti-entropy's pass time and targets)
    gives a targeted refresh of a version already rolled out a name of its own."""
    upsert = snapshot.operation is Operation.UPSERT
    parameter = ParameterRef(
        name=snapshot.name,
        # A deletion has no version (the CRD requires >= 1); lastModified orders it.
        version=snapshot.version if upsert else None,
        last_modified=snapshot.last_modified,
        operation=snapshot.operation,
        value_type=snapshot.value_type,
    )
    source = Source(
        trigger=trigger,
        event_id=event.event_id if event is not None else None,
        event_time=event.time if event is not None else None,
    )
    name = None
    if repair is not None:
        name = refresh_name(
            route=route.name,
            parameter_name=snapshot.name,
            version=snapshot.version,
            last_modified=snapshot.last_modified,
            repair=repair,
        )
    return new_refresh(
        namespace=route.namespace,
        route=route.name,
        route_uid=route.uid,
        parameter=parameter,
        scope=scope,
        source=source,
        targets=targets,
        name=name,
    )


class Recorder:
    """Creates ConfigRefresh objects; one per operator process, shared by everything that records."""

    def __init__(self, *, kube_api: Kube, blocking: Blocking, values: ValueCache) -> None:
        self._kube = kube_api
        self._blocking = blocking
        self._values = values

    async def record(
        self,
        route: Route,
        snapshot: ParameterSnapshot,
        *,
        trigger: Trigger,
        scope: Mapping[str, str] | None = None,
        event: ParameterChangeEvent | None = None,
        targets: Sequence[str] = (),
        repair: str | None = None,
    ) -> Recorded:
        """Create the ConfigRefresh of `snapshot` on `route`; raise KubeError when the API refuses or
        cannot be reached (the caller decides whether to retry). `scope` defaults to the route's scope of
        the parameter.

        With payload `value` the snapshot is handed to the rollout first, so the rollout does not read
        Parameter Store again; a deletion is handed over only when an event reported it (one that resync
        or anti-entropy inferred from absence is confirmed by the rollout's own read)."""
        if scope is None:
            scope = route.scope_of(snapshot.name) or {}
        refresh = refresh_for(
            route, snapshot, trigger=trigger, scope=scope, event=event, targets=targets, repair=repair
        )
        if route.refresh.payload == "value" and (
            snapshot.operation is Operation.UPSERT or trigger is Trigger.EVENT
        ):
            self._values.put(route.namespace, refresh.name, snapshot)
        try:
            created: bool = await self._blocking.call(
                self._kube.create_refresh, route.namespace, refresh.to_body()
            )
        except KubeError:
            metrics.KUBE_API_ERRORS.labels("create_refresh").inc()
            raise
        return Recorded(name=refresh.name, created=created)
