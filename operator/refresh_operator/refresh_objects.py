"""The ConfigRefresh object the consumer creates for one change of one parameter on one route.

Labels make `kubectl get cfgr -l configrefresh.io/route=...` and retention work without parsing names; the
full parameter name is an annotation because label values cannot hold slashes. The value never appears.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refresh_operator import kube
from refresh_operator.events import ParameterChangeEvent
from refresh_operator.naming import parameter_hash, refresh_name
from refresh_operator.ordering import Operation, canonical_time
from refresh_operator.parameter_store import ParameterSnapshot
from refresh_operator.routes import Route

LABEL_ROUTE = "configrefresh.io/route"
LABEL_PARAMETER_HASH = "configrefresh.io/parameter-hash"
LABEL_VERSION = "configrefresh.io/version"
ANNOTATION_PARAMETER_NAME = "configrefresh.io/parameter-name"
LABEL_HALTED = "configrefresh.io/halted"
"""Set ("true") before a rollout is recorded Halted, removed once it leaves Halted: a newer version finds
the Halted rollouts it takes over by this label instead of listing every rollout of its parameter. It is a
hint, never the truth: the phase is checked too, so a label left behind by a crash changes nothing."""


def name_for(route: Route, snapshot: ParameterSnapshot) -> str:
    return refresh_name(
        route=route.name,
        parameter_name=snapshot.name,
        version=snapshot.version,
        last_modified=snapshot.last_modified,
    )


def refresh_body(
    *,
    route: Route,
    scope: Mapping[str, str],
    snapshot: ParameterSnapshot,
    trigger: str,
    event: ParameterChangeEvent | None,
) -> dict[str, Any]:
    source: dict[str, Any] = {"trigger": trigger}
    if event is not None:
        source["eventId"] = event.event_id
        source["eventTime"] = canonical_time(event.time)
    parameter: dict[str, Any] = {
        "name": snapshot.name,
        "lastModified": canonical_time(snapshot.last_modified),
        "operation": str(snapshot.operation),
        "type": snapshot.value_type,
    }
    if snapshot.operation is Operation.UPSERT:
        # A deletion has no version (the CRD requires >= 1); lastModified orders it.
        parameter["version"] = snapshot.version
    return {
        "apiVersion": f"{kube.GROUP}/{kube.VERSION}",
        "kind": "ConfigRefresh",
        "metadata": {
            "name": name_for(route, snapshot),
            "namespace": route.namespace,
            "labels": {
                LABEL_ROUTE: route.name[:63],
                LABEL_PARAMETER_HASH: parameter_hash(snapshot.name),
                LABEL_VERSION: str(snapshot.version),
            },
            "annotations": {ANNOTATION_PARAMETER_NAME: snapshot.name},
            "ownerReferences": [
                {
                    "apiVersion": f"{kube.GROUP}/{kube.VERSION}",
                    "kind": "ConfigRoute",
                    "name": route.name,
                    "uid": route.uid,
                }
            ]
            if route.uid
            else [],
        },
        "spec": {
            "route": route.name,
            "parameter": parameter,
            "scope": dict(scope),
            "source": source,
        },
    }
