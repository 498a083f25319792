"""Routes: scope from the parameter name narrows the targets.

Backtracking scopePatterns: test_security_boundaries.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devstack.stack.kube import apply, get_json, route_object

if TYPE_CHECKING:
    from devstack.stack.builder import Stack


def test_the_scope_in_the_name_selects_the_instances_of_that_tenant(stack: Stack) -> None:
    tenants = {
        instance.instance_id: ("acme" if index % 2 == 0 else "globex")
        for index, instance in enumerate(stack.fleet)
    }
    for instance in stack.fleet:
        stack.local_aws.register_instance(
            instance.instance_id,
            instance.host,
            instance.refresh_port,
            attributes={"tenant": tenants[instance.instance_id]},
        )
    route: dict[str, Any] = route_object(
        stack.route, local_aws=stack.local_aws, prefix=stack.local_aws.prefix
    )
    route["spec"]["scopePattern"] = f"^{stack.local_aws.prefix}(?P<tenant>[a-z]+)/"
    route["spec"]["discovery"]["cloudMap"]["queryParameters"] = {"tenant": "{tenant}"}
    apply(stack.control_plane, stack.namespace, route)
    stack.wait_for(
        lambda: (
            (r := get_json(stack.control_plane, "configroute", stack.route, "-n", stack.namespace))
            .get("status", {})
            .get("observedGeneration")
            == r["metadata"]["generation"]
        ),
        timeout=30,
        what="the scoped route indexed",
    )
    name = f"{stack.local_aws.prefix}acme/db_url"
    version = stack.put(name, "acme-only")
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"})
    assert rollout["status"]["phase"] == "Succeeded", rollout["status"]
    assert rollout["spec"]["scope"] == {"tenant": "acme"}
    assert rollout["status"]["progress"] == "5/5"
    got = {
        instance.instance_id: value for instance, value in zip(stack.fleet, stack.values(name), strict=True)
    }
    assert {i for i, (value, _) in got.items() if value == "acme-only"} == {
        i for i, tenant in tenants.items() if tenant == "acme"
    }
