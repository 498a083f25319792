"""The stack's Kubernetes side: the ConfigRoute it applies, reading objects back, waiting on a state.

Everything goes through the control plane's kubectl with the admin kubeconfig, as a user would type it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane

T = TypeVar("T")

REFRESH_DEFAULTS: dict[str, Any] = {"timeoutSeconds": 2, "maxAttempts": 3, "deadlineSeconds": 60}
"""The stack's route refresh settings: short, so that a failing instance shows within seconds."""


def route_object(
    name: str,
    *,
    local_aws: LocalAws,
    prefix: str | None = None,
    pod_sync_labels: dict[str, str] | None = None,
    **refresh: Any,
) -> dict[str, Any]:
    """A ConfigRoute: parameters under `prefix` (default: the stack's) go to the local Cloud Map service.

    With `pod_sync_labels` the route also has `spec.podSync`: podSync registers the Ready pods with those
    labels, on `refresh["port"]`.
    """
    spec: dict[str, Any] = {
        "parameterPrefix": local_aws.prefix if prefix is None else prefix,
        "discovery": {"cloudMap": {"namespace": local_aws.namespace_name, "service": local_aws.service_name}},
        "refresh": {**REFRESH_DEFAULTS, **refresh},
    }
    if pod_sync_labels is not None:
        spec["podSync"] = {"selector": {"matchLabels": pod_sync_labels}, "port": refresh["port"]}
    return {
        "apiVersion": "configrefresh.io/v1alpha1",
        "kind": "ConfigRoute",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply(control_plane: ControlPlane, namespace: str, obj: dict[str, Any]) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def apply_all(control_plane: ControlPlane, namespace: str, objects: Sequence[dict[str, Any]]) -> None:
    """Apply many objects, 200 to a kubectl call (a List each)."""
    for start in range(0, len(objects), 200):
        batch = {"apiVersion": "v1", "kind": "List", "items": list(objects[start : start + 200])}
        apply(control_plane, namespace, batch)


def get_json(control_plane: ControlPlane, *args: str) -> Any:
    return json.loads(control_plane.kubectl("get", *args, "-o", "json").stdout)


def refreshes(control_plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """Every ConfigRefresh in the namespace."""
    items: list[dict[str, Any]] = get_json(control_plane, "configrefreshes", "-n", namespace)["items"]
    return items


def refreshes_of(control_plane: ControlPlane, namespace: str, parameter: str) -> list[dict[str, Any]]:
    return [
        item for item in refreshes(control_plane, namespace) if item["spec"]["parameter"]["name"] == parameter
    ]


def is_ready(obj: dict[str, Any]) -> bool:
    """Whether an object's status has the condition Ready=True."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def route_ready(control_plane: ControlPlane, namespace: str, name: str) -> bool:
    return is_ready(get_json(control_plane, "configroute", name, "-n", namespace))


def ready_routes(control_plane: ControlPlane, namespace: str) -> set[str]:
    """The names of the namespace's Ready ConfigRoutes (one list call, however many routes)."""
    items = get_json(control_plane, "configroutes", "-n", namespace)["items"]
    return {item["metadata"]["name"] for item in items if is_ready(item)}


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy and return that; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60.0, every: float = 0.05) -> T:
    """`wait_for` with the thing waited for named first and the probe's type kept."""
    found: T = wait_for(probe, timeout=timeout, interval=every, what=what)
    return found


def wait_route_ready(control_plane: ControlPlane, namespace: str, name: str, timeout: float = 60.0) -> None:
    wait_for(
        lambda: route_ready(control_plane, namespace, name), timeout=timeout, what=f"ConfigRoute {name} Ready"
    )


def wait_routes_ready(
    control_plane: ControlPlane, namespace: str, names: Sequence[str], timeout: float = 60.0
) -> None:
    """Until every route in `names` is Ready (one list call per poll, however many routes)."""
    wait_for(
        lambda: set(names) <= ready_routes(control_plane, namespace),
        timeout=timeout,
        interval=1.0 if len(names) > 10 else 0.2,
        what=f"{len(names)} ConfigRoute(s) Ready",
    )
