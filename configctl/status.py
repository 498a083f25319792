"""`configctl status`: the rollouts in the namespace, newest first, optionally for one parameter/route.

Filtering happens in the API server through the labels the operator sets (parameter hash, route), so
a namespace with thousands of ConfigRefreshes still answers with one small list.
"""

from __future__ import annotations

from configctl.kube import Kube
from configctl.rollouts import Rollout, from_object, newest_first
from configrefresh_api.labels import refresh_selector


def list_rollouts(
    kube: Kube, *, parameter: str | None, route: str | None, limit: int | None
) -> list[Rollout]:
    found = [
        from_object(o)
        for o in kube.list_refreshes(label_selector=refresh_selector(route=route, parameter_name=parameter))
    ]
    if parameter is not None:
        found = [r for r in found if r.parameter == parameter]
    ordered = newest_first(found)
    return ordered if limit is None else ordered[:limit]
