"""Failures: stopped instances are named, late instances are caught up, an operator crash loses nothing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devstack.stack.builder import Stack


def test_two_stopped_instances_make_a_partially_failed_rollout_naming_exactly_them(stack: Stack) -> None:
    down = [stack.fleet[3], stack.fleet[7]]
    for instance in down:
        instance.stop()
    name = f"{stack.local_aws.prefix}orders/partial"
    version = stack.put(name, "most-of-them")
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"}, timeout=120)
    status = rollout["status"]
    assert status["phase"] == "PartiallyFailed", status
    assert (status["targets"], status["refreshed"], status["failed"]) == (10, 8, 2)
    failed = sorted(entry["id"] for entry in status["instances"] if entry["result"] == "Failed")
    assert failed == sorted(instance.instance_id for instance in down)
    events = stack.wait_for(
        lambda: [
            e for e in stack.events_for(rollout["metadata"]["name"]) if e["reason"] == "PartiallyFailed"
        ],
        timeout=30,
        what="a PartiallyFailed event",
    )
    message = events[0]["message"]
    assert all(instance.instance_id in message for instance in down), message
    others = [i.instance_id for i in stack.fleet if i not in down]
    assert not any(f"{other}," in message or message.endswith(other) for other in others), message


def test_an_instance_restarted_before_the_deadline_is_caught_up(stack: Stack) -> None:
    stack.set_refresh(maxAttempts=20, deadlineSeconds=120)
    late = stack.fleet[5]
    late.stop()
    name = f"{stack.local_aws.prefix}orders/late"
    version = stack.put(name, "eventually")
    stack.wait_for(
        lambda: any((o.get("status") or {}).get("refreshed") == 9 for o in stack.refreshes_of(name)),
        timeout=60,
        what="9 of 10 refreshed while one instance is down",
    )
    late.start()
    late.wait_serving()
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"}, timeout=150)
    assert rollout["status"]["phase"] == "Succeeded", rollout["status"]
    assert rollout["status"]["progress"] == "10/10"
    assert stack.values(name) == [("eventually", version)] * 10


def test_an_operator_killed_mid_rollout_resumes_and_succeeds(stack: Stack) -> None:
    stack.set_refresh(maxAttempts=20, deadlineSeconds=180)
    late = stack.fleet[2]
    late.stop()
    name = f"{stack.local_aws.prefix}orders/crash"
    version = stack.put(name, "survives")
    stack.wait_for(
        lambda: any((o.get("status") or {}).get("refreshed") == 9 for o in stack.refreshes_of(name)),
        timeout=60,
        what="9 of 10 refreshed and recorded before the crash",
    )
    stack.operator.kill()
    (before,) = stack.refreshes_of(name)
    assert before["status"]["phase"] == "InProgress"
    late.start()
    late.wait_serving()
    time.sleep(1)
    stack.operator.start()
    stack.operator.wait_ready()
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"}, timeout=180)
    assert rollout["status"]["phase"] == "Succeeded", rollout["status"]
    assert rollout["status"]["progress"] == "10/10"
    assert stack.values(name) == [("survives", version)] * 10
    assert len(stack.refreshes_of(name)) == 1
    attempts = {e["id"]: e["attempts"] for e in rollout["status"]["instances"]}
    assert all(attempts[i.instance_id] == 1 for i in stack.fleet if i is not late), attempts


def test_a_passing_cloud_map_failure_is_retried_and_a_lasting_one_fails_the_rollout(stack: Stack) -> None:
    stack.local_aws.inject_fault(
        "servicediscovery:DiscoverInstances", error="InvalidInput", count=2, status=400
    )
    name = f"{stack.local_aws.prefix}orders/discovery"
    version = stack.put(name, "after-retries")
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"}, timeout=60)
    assert rollout["status"]["phase"] == "Succeeded", rollout["status"]
    assert stack.values(name) == [("after-retries", version)] * 10

    stack.local_aws.inject_fault(
        "servicediscovery:DiscoverInstances", error="InvalidInput", count=100, status=400
    )
    version = stack.put(name, "never-arrives")
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"}, timeout=90)
    stack.local_aws.clear_faults()
    assert rollout["status"]["phase"] == "Failed", rollout["status"]
    ready = next(c for c in rollout["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "DiscoveryFailed"
    assert "InvalidInput" in ready["message"]
    failed_events = [e for e in stack.events_for(rollout["metadata"]["name"]) if e["reason"] == "Failed"]
    assert failed_events
