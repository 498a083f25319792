"""Missed-event recovery on the real path: a change whose event never reaches the queue is found by the
route's periodic resync and rolled out with `trigger: resync`; a fleet in step costs only the listing.

The event is dropped where AWS would lose it: the EventBridge rule is disabled around the write (the local
emitter, like AWS, skips disabled rules), so nothing reaches SQS. Timings and Parameter Store calls are
printed for the report; the one timing asserted is the recovery bound docs/operator.md promises for a
lost event (one interval plus the grace period plus one rollout), read from the rollout's own status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack.aws.local_aws import LocalAws
from devstack.stack.builder import Stack
from devstack.stack.kube import apply, get_json, route_object, wait_for

CONFIGCTL = str(Path(sys.executable).parent / "configctl")
INTERVAL = 10
GRACE = 2  # CONFIG_REFRESH_RESYNC_GRACE_SECONDS of the fixture's operator
# docs/operator.md bounds a lost event's recovery by one interval plus the grace period plus one rollout.
# The slack on top of interval + grace: the scheduler looks for due passes once a second (TICK_SECONDS),
# the pass's own listing and GetParametersByPath calls come before the grace check, and the rollout
# itself (object created, seen by kopf, 3 instances acknowledged) follows it; together well under a
# second on an idle machine (printed), so the rest is headroom for a busy 2-core machine.
RECOVERY_SLACK = 5
BASELINE = 24
PASSES = 'config_refresh_resync_passes_total{outcome="ok"}'
RECOVERED = "config_refresh_resync_recovered_total"
BY_PATH = 'config_refresh_parameter_store_calls_total{api="GetParametersByPath",outcome="ok"}'


def resync_route(name: str, *, local_aws: LocalAws, interval: int) -> dict[str, Any]:
    obj = route_object(name, local_aws=local_aws, prefix=local_aws.prefix)
    obj["spec"]["resync"] = {"intervalSeconds": interval}
    return obj


@pytest.fixture
def resync_stack(local_aws: LocalAws, make_stack: Callable[..., Stack]) -> Stack:
    """Three instances that bootstrapped BASELINE parameters written before the route existed, a route
    with a 10 s resync, and the operator (grace period 2 s)."""
    ssm = local_aws.client("ssm")
    events = local_aws.client("events")
    events.disable_rule(Name=local_aws.rule_name)
    for index in range(BASELINE):
        ssm.put_parameter(Name=f"{local_aws.prefix}base/p{index:02d}", Value=f"v{index}", Type="String")
    events.enable_rule(Name=local_aws.rule_name)
    time.sleep(1.1)  # creationTimestamp has whole seconds: the route is strictly newer than the baseline
    return make_stack(
        3, resync_seconds=INTERVAL, operator_env={"CONFIG_REFRESH_RESYNC_GRACE_SECONDS": str(GRACE)}
    )


def wait_passes(stack: Stack, count: int, timeout: float = 4 * INTERVAL + 30) -> float:
    target = stack.metric(PASSES) + count
    stack.wait_for(lambda: stack.metric(PASSES) >= target, timeout=timeout, what=f"{count} resync pass(es)")
    return stack.metric(PASSES)


@pytest.mark.timeout(600)
def test_a_fleet_in_step_recovers_nothing_and_costs_one_call_per_ten_parameters(resync_stack: Stack) -> None:
    stack = resync_stack
    name = f"{stack.local_aws.prefix}orders/in-step"
    version = stack.put(name, "by-event")
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"})
    assert rollout["status"]["phase"] == "Succeeded", rollout["status"]
    assert rollout["spec"]["source"]["trigger"] == "event"

    wait_passes(stack, 1)
    stack.local_aws.reset_call_counts()
    before = stack.metric(BY_PATH)
    wait_passes(stack, 2)
    calls = stack.local_aws.call_counts().get("ssm:GetParametersByPath", 0)
    by_metric = stack.metric(BY_PATH) - before
    parameters = BASELINE + 1
    per_pass = by_metric / 2
    print(
        f"\nresync cost: {parameters} parameters, {per_pass:g} GetParametersByPath call(s) per pass "
        f"(endpoint counted {calls} over the window of 2 passes); "
        f"1,000 parameters at 300 s: {-(-1000 // 10) * 3600 // 300} calls/hour per route"
    )
    assert per_pass == -(-parameters // 10)
    assert calls >= by_metric
    assert stack.metric(RECOVERED) == 0
    assert [o["metadata"]["name"] for o in stack.refreshes_of(name)] == [rollout["metadata"]["name"]]
    everything = get_json(stack.control_plane, "cfgr", "-n", stack.namespace)["items"]
    assert len(everything) == 1, "a route created after its parameters must not flood the fleet"


@pytest.mark.timeout(600)
def test_an_event_dropped_upstream_is_recovered_within_one_interval_plus_the_grace_period(
    resync_stack: Stack,
) -> None:
    stack = resync_stack
    events = stack.local_aws.client("events")
    name = f"{stack.local_aws.prefix}orders/dropped"
    wait_passes(stack, 1)  # the loop runs; the drop happens at an arbitrary point of an interval

    events.disable_rule(Name=stack.local_aws.rule_name)
    try:
        version = stack.put(name, "lost-event")
        written = time.monotonic()
    finally:
        events.enable_rule(Name=stack.local_aws.rule_name)
    assert stack.queue_depth() == (0, 0), "the event must never have reached the queue"

    # Wait for the state (generously: a slow machine must fail on the bound below, not on this wait)...
    stack.wait_for(
        lambda: stack.values(name) == [("lost-event", version)] * len(stack.fleet),
        timeout=3 * INTERVAL + 60,
        what="every instance holding the change whose event was dropped",
    )
    recovered_after = time.monotonic() - written
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"})
    assert rollout["status"]["phase"] == "Succeeded", rollout["status"]
    assert rollout["spec"]["source"]["trigger"] == "resync"
    assert rollout["status"]["progress"] == f"{len(stack.fleet)}/{len(stack.fleet)}"
    # ...then bound what the state records: latencyMs is the write's LastModifiedDate to the last
    # instance's acknowledgment, measured by the operator from the event itself, not by this test's polls.
    latency = rollout["status"]["latencyMs"] / 1000
    print(
        f"\nrecovery of a dropped event at a {INTERVAL} s interval and {GRACE} s grace: write to last ack "
        f"{latency:.1f} s (bound {INTERVAL + GRACE + RECOVERY_SLACK} s), seen by the test after "
        f"{recovered_after:.1f} s"
    )
    assert latency <= INTERVAL + GRACE + RECOVERY_SLACK, rollout["status"]
    assert stack.metric(RECOVERED) == 1

    wait_passes(stack, 2)
    assert len(stack.refreshes_of(name)) == 1, "later passes see the change covered"
    assert stack.metric(RECOVERED) == 1


@pytest.mark.timeout(600)
def test_a_dropped_delete_is_recovered_after_two_passes(resync_stack: Stack) -> None:
    stack = resync_stack
    ssm = stack.local_aws.client("ssm")
    events = stack.local_aws.client("events")
    name = f"{stack.local_aws.prefix}orders/deleted"
    version = stack.put(name, "soon-gone")
    stack.wait_phase(name, version, {"Succeeded"})

    events.disable_rule(Name=stack.local_aws.rule_name)
    try:
        ssm.delete_parameter(Name=name)
    finally:
        events.enable_rule(Name=stack.local_aws.rule_name)

    deletion = wait_for(
        lambda: [o for o in stack.refreshes_of(name) if o["spec"]["parameter"]["operation"] == "Delete"],
        timeout=4 * INTERVAL + 60,
        what="a Delete ConfigRefresh recovered by resync",
    )[0]
    assert deletion["spec"]["source"]["trigger"] == "resync"
    stack.wait_for(
        lambda: stack.values(name) == [("<missing>", 0)] * len(stack.fleet),
        timeout=60,
        what="the deleted parameter gone from every instance",
    )


@pytest.mark.timeout(300)
def test_resync_interval_zero_turns_resync_off(resync_stack: Stack) -> None:
    stack = resync_stack
    apply(
        stack.control_plane,
        stack.namespace,
        resync_route("services", local_aws=stack.local_aws, interval=0),
    )

    def indexed() -> bool:
        route = get_json(stack.control_plane, "configroute", "services", "-n", stack.namespace)
        return bool((route.get("status") or {}).get("observedGeneration") == route["metadata"]["generation"])

    wait_for(indexed, timeout=30, what="the route's new generation indexed")
    time.sleep(2)
    passes = stack.metric(PASSES)
    time.sleep(INTERVAL + 5)
    assert stack.metric(PASSES) == passes


REPAIRED = "config_refresh_resync_repaired_instances_total"


def repairs_of(stack: Stack, name: str) -> list[dict[str, Any]]:
    return [o for o in stack.refreshes_of(name) if o["spec"].get("targets")]


@pytest.mark.timeout(600)
def test_an_instance_that_joined_after_a_rollout_is_caught_up_by_anti_entropy(
    resync_stack: Stack, service_fleet: Callable[..., Any]
) -> None:
    stack = resync_stack
    late = service_fleet(1, local_aws=stack.local_aws)[0]  # bootstrapped now, before the write
    name = f"{stack.local_aws.prefix}orders/joined-late"
    version = stack.put(name, "after-bootstrap")
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"})
    assert rollout["status"]["progress"] == "3/3", rollout["status"]
    registered = time.monotonic()
    stack.local_aws.register_instance(late.instance_id, late.host, late.refresh_port)

    repair = wait_for(
        lambda: [o for o in repairs_of(stack, name) if (o.get("status") or {}).get("phase") == "Succeeded"],
        timeout=3 * INTERVAL + 60,
        what="a targeted repair of the late instance",
    )[0]
    entry = late.get_config(name)
    print(f"\nlate instance repaired {time.monotonic() - registered:.1f} s after it registered")
    assert (entry.value, int(entry.version)) == ("after-bootstrap", version)
    assert repair["spec"]["targets"] == [late.instance_id]
    assert repair["spec"]["source"]["trigger"] == "resync"
    assert repair["spec"]["parameter"]["version"] == version
    assert repair["status"]["progress"] == "1/1"
    assert stack.metric(REPAIRED) == 1
    assert stack.metric(RECOVERED) == 0, "a lagging instance is not a lost event"

    wait_passes(stack, 2)
    assert len(repairs_of(stack, name)) == 1, "a repaired instance is not repaired again"


@pytest.mark.timeout(600)
def test_an_instance_unhealthy_during_a_rollout_is_repaired_once_healthy(resync_stack: Stack) -> None:
    stack = resync_stack
    lagging = stack.fleet[1]
    stack.local_aws.set_health(lagging.instance_id, False)
    name = f"{stack.local_aws.prefix}orders/was-unhealthy"
    version = stack.put(name, "while-away")
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"})
    assert rollout["status"]["progress"] == "2/2", rollout["status"]
    assert stack.values(name)[1] == ("<missing>", 0)
    stack.local_aws.set_health(lagging.instance_id, True)

    stack.wait_for(
        lambda: stack.values(name) == [("while-away", version)] * len(stack.fleet),
        timeout=3 * INTERVAL + 60,
        what="the lagging instance repaired",
    )
    repair = wait_for(
        lambda: [o for o in repairs_of(stack, name) if (o.get("status") or {}).get("phase") == "Succeeded"],
        timeout=30,
        what="the repair Succeeded",
    )[0]
    assert repair["spec"]["targets"] == [lagging.instance_id]
    assert (repair["status"]["targets"], repair["status"]["refreshed"]) == (1, 1)


@pytest.mark.timeout(600)
def test_configctl_verify_repairs_a_lagging_instance_at_once(resync_stack: Stack) -> None:
    stack = resync_stack
    apply(
        stack.control_plane,
        stack.namespace,
        resync_route("services", local_aws=stack.local_aws, interval=3600),
    )
    wait_for(
        lambda: (lambda r: (r.get("status") or {}).get("observedGeneration") == r["metadata"]["generation"])(
            get_json(stack.control_plane, "configroute", "services", "-n", stack.namespace)
        ),
        timeout=30,
        what="the route's new generation indexed",
    )
    lagging = stack.fleet[2]
    stack.local_aws.set_health(lagging.instance_id, False)
    name = f"{stack.local_aws.prefix}orders/verified"
    version = stack.put(name, "checked")
    stack.wait_phase(name, version, {"Succeeded"})
    stack.local_aws.set_health(lagging.instance_id, True)

    answer = subprocess.run(
        [CONFIGCTL, "verify", "--route", "services", "-n", stack.namespace, "--timeout", "90s", "-o", "json"],
        env={**os.environ, "KUBECONFIG": str(stack.control_plane.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    resync = json.loads(answer.stdout)["routes"]["services"]
    assert resync["repairedInstances"] == 1, resync
    assert resync["recovered"] == 0
    stack.wait_for(
        lambda: stack.values(name) == [("checked", version)] * len(stack.fleet),
        timeout=60,
        what="the lagging instance repaired on demand",
    )
    route = get_json(stack.control_plane, "configroute", "services", "-n", stack.namespace)
    assert route["status"]["resync"]["parameters"] == BASELINE + 1
    wide = stack.control_plane.kubectl("get", "configroute", "services", "-n", stack.namespace, "-o", "wide")
    assert "LAST-RESYNC" in wide.stdout
