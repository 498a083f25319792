"""An instance that leaves while a rollout is in flight: its failed calls do not count when Cloud Map no
longer lists it (Gone), and still do when it stays registered (Failed).

The rollout picks its targets once, at its start. The route has two waves with a bake between them: the
test waits for the state "wave 1 applied, baking; the last instance still Pending" and only then stops the
last instance (and, in the first test, deregisters it), so wave 2 calls a closed port at a target picked
before it left, as on a real cluster when a pod is terminated mid-rollout.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack.fixtures.stack import StackFactory
from devstack.services.fleet import Instance
from devstack.stack.builder import Stack

FINAL = {"Succeeded", "PartiallyFailed", "Failed", "Halted"}
BAKE_SECONDS = 30
"""Long enough for the test to stop (and deregister) one process while wave 1 bakes; the test checks
that wave 2 had not started before it acted, so a stalled machine fails it instead of passing it."""


@pytest.fixture
def departing_stack(make_stack: StackFactory) -> Stack:
    """Three instances, the route `departures`: wave 1 is one instance, then a long bake, then the rest."""
    return make_stack(
        3,
        route_name="departures",
        rollout={"waves": ["1", "100%"], "bakeSeconds": BAKE_SECONDS, "failureThreshold": 0},
        maxAttempts=3,
        timeoutSeconds=1,
        deadlineSeconds=20,
    )


def entry(rollout: dict[str, Any], instance_id: str) -> dict[str, Any] | None:
    return next(
        (e for e in (rollout.get("status") or {}).get("instances") or [] if e["id"] == instance_id), None
    )


def baking_wave_one(stack: Stack, name: str, version: int, first: str, last: str) -> dict[str, Any]:
    """Wait until wave 1 (the first id) is Applied and the rollout bakes, the last id still Pending."""

    def probe() -> dict[str, Any] | None:
        for item in stack.refreshes_of(name):
            status = item.get("status") or {}
            if item["spec"]["parameter"].get("version") != version:
                continue
            done, waiting = entry(item, first), entry(item, last)
            if (
                status.get("phase") == "InProgress"
                and status.get("currentWave") == 1
                and done is not None
                and done["result"] == "Applied"
                and waiting is not None
                and waiting["result"] == "Pending"
            ):
                return item
        return None

    found: dict[str, Any] = stack.wait_for(probe, timeout=120, what="wave 1 applied and baking")
    return found


def leave_during_the_bake(
    stack: Stack, name: str, *, deregister: bool
) -> tuple[int, Instance, list[Instance]]:
    ordered = sorted(stack.fleet, key=lambda instance: instance.instance_id)
    first, leaving = ordered[0], ordered[-1]
    version = stack.put(name, "while-one-leaves")
    baking_wave_one(stack, name, version, first.instance_id, leaving.instance_id)
    leaving.kill()  # its port is closed from now on
    if deregister:
        stack.local_aws.deregister_instance(leaving.instance_id)  # what podSync does for a terminated pod
    (now,) = [item for item in stack.refreshes_of(name) if item["spec"]["parameter"]["version"] == version]
    waiting = entry(now, leaving.instance_id)
    late = f"wave 2 started before the instance left (the bake of {BAKE_SECONDS} s passed): {now['status']}"
    assert now["status"].get("currentWave") == 1, late
    assert waiting is not None, late
    assert waiting["result"] == "Pending", late
    return version, leaving, [instance for instance in ordered if instance is not leaving]


@pytest.mark.timeout(600)
def test_an_instance_deregistered_mid_rollout_is_gone_and_the_rollout_succeeds(
    departing_stack: Stack,
) -> None:
    stack = departing_stack
    name = f"{stack.local_aws.prefix}departures/key"
    version, leaving, staying = leave_during_the_bake(stack, name, deregister=True)
    done = stack.wait_phase(name, version, FINAL, timeout=180)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["targets"], status["refreshed"], status["failed"], status["gone"]) == (3, 2, 0, 1)
    assert status["progress"] == "2/2"
    gone = entry(done, leaving.instance_id)
    assert gone is not None
    assert gone["result"] == "Gone", gone
    assert gone["error"].startswith("deregistered during the rollout"), gone
    assert gone["attempts"] >= 1, gone  # it was called (a target picked before it left), then re-checked
    assert {e["id"]: e["result"] for e in status["instances"] if e["id"] != leaving.instance_id} == {
        instance.instance_id: "Applied" for instance in staying
    }
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    assert "1 left Cloud Map during the rollout" in ready["message"]
    for instance in staying:
        assert instance.get_config(name).value == "while-one-leaves"


@pytest.mark.timeout(600)
def test_an_instance_stopped_mid_rollout_but_still_registered_fails_the_rollout_partially(
    departing_stack: Stack,
) -> None:
    stack = departing_stack
    name = f"{stack.local_aws.prefix}departures/kept"
    version, leaving, _ = leave_during_the_bake(stack, name, deregister=False)
    done = stack.wait_phase(name, version, FINAL, timeout=180)
    status = done["status"]
    assert status["phase"] == "PartiallyFailed", status
    assert (status["targets"], status["refreshed"], status["failed"], status["gone"]) == (3, 2, 1, 0)
    failed = entry(done, leaving.instance_id)
    assert failed is not None
    assert failed["result"] == "Failed", failed
    assert "UNAVAILABLE" in failed["error"] or "CIRCUIT_OPEN" in failed["error"], failed
