"""`configctl status`: the rollouts in the namespace, newest first, optionally for one parameter/route.

Filtering happens in the API server through the labels the operator sets (parameter hash, route), so
a namespace with thousands of ConfigRefreshes still answers with one small list.
"""

from __future__ import annotations

from configctl.kube import LABEL_PARAMETER_HASH, LABEL_ROUTE, Kube
from configctl.naming import parameter_hash
from configctl.rollouts import Rollout, from_object, newest_first


def selector(*, parameter: str | None, route: str | None) -> str:
    parts = []
    if parameter is not None:
        parts.append(f"{LABEL_PARAMETER_HASH}={parameter_hash(parameter)}")
    if route is not None:
        parts.append(f"{LABEL_ROUTE}={route[:63]}")
    return ",".join(parts)


def list_rollouts(
    kube: Kube, *, parameter: str | None, route: str | None, limit: int | None
) -> list[Rollout]:
    found = [
        from_object(o) for o in kube.list_refreshes(label_selector=selector(parameter=parameter, route=route))
    ]
    if parameter is not None:
        found = [r for r in found if r.parameter == parameter]
    ordered = newest_first(found)
    return ordered if limit is None else ordered[:limit]
