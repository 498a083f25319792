"""Security 13: hostile ConfigRoutes are rejected by the CRD or refused by the operator with a condition,
and never hang it: a normal change, including one under a hostile route's prefix, is applied afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import VersionWatch, apply, assert_converged, get_json, route_object, wait_for

from devstack.controlplane import CommandError

REJECTED_BY_THE_API = {
    "prefix-root": ({"parameterPrefix": "/"}, 'must not be just "/"'),
    "prefix-relative": ({"parameterPrefix": "config-service/"}, 'must start with "/"'),
    "pattern-oversized": ({"scopePattern": "^(?P<t>" + "a" * 600 + ")"}, "512"),
    "spec-oversized": ({"parameterPrefix": "/" + "p" * 2_000_000}, None),
}

# Accepted by the schema (a regex cannot be judged there): refused by the operator.
REFUSED_BY_THE_OPERATOR = {
    "nested-quantifier": "^/config-service/hostile-0/(?P<tenant>(a+)+)$",
    "star-star": "^/config-service/hostile-1/(?P<tenant>(a*)*b)$",
    "not-a-regex": "^/config-service/hostile-2/(?P<tenant>[a-",
}


def _ready_condition(stack: Any, name: str) -> dict[str, Any] | None:
    obj = get_json(stack.control_plane, "configroute", name, "-n", stack.namespace)
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready" and condition["status"] == "False":
            return dict(condition)
    return None


def test_the_schema_rejects_a_root_prefix_and_oversized_specs(make_stack: Callable[..., Any]) -> None:
    stack = make_stack(2)
    for name, (spec, message) in REJECTED_BY_THE_API.items():
        route = route_object(name, local_aws=stack.local_aws, prefix=f"{stack.local_aws.prefix}{name}/")
        route["spec"].update(spec)
        with pytest.raises(CommandError) as refused:
            apply(stack.control_plane, stack.namespace, route)
        if message is not None:
            assert message in str(refused.value), refused.value
    listed = get_json(stack.control_plane, "configroutes", "-n", stack.namespace)["items"]
    assert [item["metadata"]["name"] for item in listed] == [stack.route]
    print(
        f"\nhostile routes: {len(REJECTED_BY_THE_API)} rejected by the API server: "
        f"{sorted(REJECTED_BY_THE_API)}"
    )


def test_backtracking_scope_patterns_after_a_prefix_are_refused_and_never_hang_the_operator(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(5)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    started = time.monotonic()
    for index, (name, pattern) in enumerate(REFUSED_BY_THE_OPERATOR.items()):
        route = route_object(
            name, local_aws=stack.local_aws, prefix=f"{stack.local_aws.prefix}hostile-{index}/"
        )
        route["spec"]["scopePattern"] = pattern
        apply(stack.control_plane, stack.namespace, route)
    conditions = {
        name: wait_for(
            lambda name=name: _ready_condition(stack, name), timeout=30, what=f"route {name} refused"
        )
        for name in REFUSED_BY_THE_OPERATOR
    }
    refused_after = time.monotonic() - started
    for name in ("nested-quantifier", "star-star"):
        assert conditions[name]["reason"] == "UnsafeScopePattern", conditions[name]
    assert conditions["not-a-regex"]["reason"] != "", conditions["not-a-regex"]

    # The operator still handles normal changes, including names the refused routes would have claimed
    # (with an input that makes the nested quantifiers backtrack): the valid route takes them.
    names = [f"{stack.local_aws.prefix}orders/normal", f"{stack.local_aws.prefix}hostile-0/{'a' * 40}!"]
    started = time.monotonic()
    versions = [stack.put(name, f"value-of-{index}") for index, name in enumerate(names)]
    for name, version in zip(names, versions, strict=True):
        rollout = stack.wait_phase(name, version, {"Succeeded"}, timeout=60)
        assert rollout["spec"]["route"] == stack.route
    assert_converged(stack.local_aws, stack.fleet, names, timeout=30)
    handled_after = time.monotonic() - started
    assert stack.operator.returncode is None
    watch.assert_monotonic()
    print(
        f"\nhostile routes: {len(REFUSED_BY_THE_OPERATOR)} refused by the operator within "
        f"{refused_after:.1f} s "
        f"({sorted({c['reason'] for c in conditions.values()})}); 2 normal changes applied "
        f"{handled_after:.1f} s after their writes"
    )
