"""Security 12 (the part tests/e2e/test_chart_install.py does not cover): an operator started for one
namespace touches nothing in another, even when a route there claims the same parameters.

The chart's RBAC side (no Secrets, no pod writes, nothing outside the watched namespaces in namespaced
mode) is checked in tests/e2e/test_chart_install.py against the real API server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from devstack.stack.kube import apply, get_json, refreshes, route_object
from tests.reliability.checks import VersionWatch, assert_converged


def test_a_namespaced_operator_leaves_other_namespaces_alone(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(3)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    other = stack.control_plane.create_namespace(f"other-{uuid.uuid4().hex[:8]}")
    apply(
        stack.control_plane,
        other,
        route_object("services", local_aws=stack.local_aws, prefix=stack.local_aws.prefix),
    )
    name = f"{stack.local_aws.prefix}tenancy/key"
    version = stack.put(name, "mine")
    stack.wait_phase(name, version, {"Succeeded"})
    assert_converged(stack.local_aws, stack.fleet, [name])
    foreign_route = get_json(stack.control_plane, "configroute", "services", "-n", other)
    assert "status" not in foreign_route or not foreign_route["status"], foreign_route.get("status")
    assert refreshes(stack.control_plane, other) == []
    own = refreshes(stack.control_plane, stack.namespace)
    assert [o["spec"]["parameter"]["name"] for o in own] == [name]
    events = get_json(stack.control_plane, "events", "-n", other)["items"]
    assert events == [], [e["reason"] for e in events]
    watch.assert_monotonic()
    print(
        f"\nnamespaced mode: 1 change, 1 ConfigRefresh in {stack.namespace}, "
        f"0 objects/status/events in {other}"
    )
