"""Security 13: hostile ConfigRoutes are rejected by the CRD or refused by the operator with a condition,
and never hang it: a normal change, including one under a hostile route's prefix, is applied afterwards.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import pytest

from devstack.controlplane.plane import CommandError
from devstack.stack.kube import apply, get_json, route_object, wait_for
from tests.reliability.checks import VersionWatch, assert_converged

REJECTED_BY_THE_API = {
    "prefix-root": ({"parameterPrefix": "/"}, 'must not be just "/"'),
    "prefix-relative": ({"parameterPrefix": "config-service/"}, 'must start with "/"'),
    "pattern-oversized": ({"scopePattern": "^(?P<t>" + "a" * 600 + ")"}, "512"),
    "spec-oversized": ({"parameterPrefix": "/" + "p" * 2_000_000}, None),
}

# Patterns that backtrack catastrophically in Python's re: RE2 matches them in linear time, so the operator
# accepts them (no smoke test is needed, and none could be complete).
LINEAR_WITH_RE2 = {
    "nested-quantifier": "^/config-service/hostile-0/(?P<tenant>(a+)+)$",
    "star-star": "^/config-service/hostile-1/(?P<tenant>(a*)*b)$",
}
# Accepted by the schema (a regex cannot be judged there): refused by the operator, which needs RE2.
REFUSED_BY_THE_OPERATOR = {
    "backreference": "^/config-service/hostile-2/(?P<tenant>a+)\\1$",
    "not-a-regex": "^/config-service/hostile-3/(?P<tenant>[a-",
}


def _ready_condition(stack: Any, name: str) -> dict[str, Any] | None:
    obj = get_json(stack.control_plane, "configroute", name, "-n", stack.namespace)
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
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


def test_backtracking_patterns_match_in_linear_time_and_what_re2_cannot_run_is_refused(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(5)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    started = time.monotonic()
    hostile = {**LINEAR_WITH_RE2, **REFUSED_BY_THE_OPERATOR}
    for index, (name, pattern) in enumerate(hostile.items()):
        route = route_object(
            name, local_aws=stack.local_aws, prefix=f"{stack.local_aws.prefix}hostile-{index}/"
        )
        route["spec"]["scopePattern"] = pattern
        apply(stack.control_plane, stack.namespace, route)
    conditions = {
        name: wait_for(
            functools.partial(_ready_condition, stack, name), timeout=30, what=f"route {name} judged"
        )
        for name in hostile
    }
    judged_after = time.monotonic() - started
    for name in LINEAR_WITH_RE2:
        assert conditions[name]["status"] == "True", conditions[name]
    for name in REFUSED_BY_THE_OPERATOR:
        assert conditions[name]["status"] == "False", conditions[name]
        assert conditions[name]["reason"] == "InvalidScopePattern", conditions[name]

    # Names that make the nested quantifiers backtrack (in Python's re) are matched at once: the one the
    # pattern rejects goes to the broad route, the one it accepts to the hostile route itself.
    names = {
        f"{stack.local_aws.prefix}orders/normal": stack.route,
        f"{stack.local_aws.prefix}hostile-0/{'a' * 1500}!": stack.route,
        f"{stack.local_aws.prefix}hostile-0/{'a' * 40}": "nested-quantifier",
    }
    started = time.monotonic()
    versions = [stack.put(name, f"value-of-{index}") for index, name in enumerate(names)]
    for (name, route_name), version in zip(names.items(), versions, strict=True):
        rollout = stack.wait_phase(name, version, {"Succeeded"}, timeout=60)
        assert rollout["spec"]["route"] == route_name
    assert_converged(stack.local_aws, stack.fleet, list(names), timeout=30)
    handled_after = time.monotonic() - started
    assert stack.operator.returncode is None
    watch.assert_monotonic()
    print(
        f"\nhostile routes: {len(hostile)} judged within {judged_after:.1f} s "
        f"({sorted({c['reason'] for c in conditions.values()})}); {len(names)} changes applied "
        f"{handled_after:.1f} s after their writes"
    )
