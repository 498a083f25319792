"""Delivery: duplicates make one object, unclaimed names none, bursts collapse, outages lose nothing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devstack.stack.builder import Stack

FINISHED = {"Succeeded", "PartiallyFailed", "Failed", "Superseded"}


def test_the_same_message_delivered_twice_makes_one_object(stack: Stack) -> None:
    name = f"{stack.local_aws.prefix}orders/feature_flags"
    version = stack.put(name, "a=1")
    stack.wait_phase(name, version, {"Succeeded"})
    first = stack.send_event(name, event_id="duplicate-1")
    second = stack.send_event(name, event_id="duplicate-1")
    assert first != second
    stack.wait_for(lambda: stack.queue_depth() == (0, 0), timeout=30, what="both copies consumed and deleted")
    objects = stack.refreshes_of(name)
    assert len(objects) == 1, [o["metadata"]["name"] for o in objects]
    assert objects[0]["metadata"]["annotations"]["configrefresh.io/parameter-name"] == name
    assert stack.metric('config_refresh_events_received_total{outcome="duplicate"}') >= 2


def test_a_parameter_outside_every_prefix_makes_no_object(stack: Stack) -> None:
    outside = "/somewhere-else/orders/db_url"
    stack.put(outside, "x")
    stack.send_event(outside)
    stack.wait_for(
        lambda: stack.metric('config_refresh_events_received_total{outcome="unrouted"}') >= 1,
        timeout=30,
        what="the unrouted event counted",
    )
    stack.wait_for(lambda: stack.queue_depth() == (0, 0), timeout=30, what="the unrouted message deleted")
    assert stack.refreshes_of(outside) == []
    assert stack.refreshes_of(f"{stack.local_aws.prefix}orders/db_url") == []


def test_an_invalid_message_is_counted_and_left_for_the_dlq(stack: Stack) -> None:
    message_id = stack.send_raw(json.dumps({"source": "aws.ec2", "detail-type": "nope"}))
    stack.wait_for(
        lambda: stack.metric('config_refresh_events_received_total{outcome="invalid"}') >= 1,
        timeout=30,
        what="the invalid message counted",
    )
    assert sum(stack.queue_depth()) == 1
    assert message_id in stack.operator.log_text()
    assert "source is 'aws.ec2'" in stack.operator.log_text()


def test_a_burst_of_twenty_writes_ends_at_the_last_version_with_few_rollouts(stack: Stack) -> None:
    name = f"{stack.local_aws.prefix}orders/burst"
    versions = [stack.put(name, f"burst-{index}") for index in range(20)]
    last = versions[-1]
    stack.wait_for(
        lambda: stack.values(name) == [("burst-19", last)] * 10,
        timeout=90,
        what="every instance at the last version",
    )
    objects = stack.wait_for(
        lambda: (
            (items := stack.refreshes_of(name))
            and all((i.get("status") or {}).get("phase") in FINISHED for i in items)
            and items
        ),
        timeout=90,
        what="every rollout of the burst finished",
    )
    phases = sorted((o["spec"]["parameter"]["version"], o["status"]["phase"]) for o in objects)
    print(f"\nburst of 20 writes: {len(objects)} rollouts: {phases}")
    assert len(objects) <= 5, phases
    assert phases[-1] == (last, "Succeeded"), phases
    assert all(phase in FINISHED for _, phase in phases)


@contextmanager
def cpu_burners() -> Iterator[None]:
    """One busy-looping process per core, so the operator, moto and the fleet fight for the CPU."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_a_burst_of_a_hundred_writes_on_a_loaded_machine_keeps_the_documented_bound(stack: Stack) -> None:
    """docs/operator.md: a burst of D seconds makes at most 2 + ceil((D - 1 s) / 2 s) rollouts (three for
    1-3 s), also while every core is busy; the last version lands everywhere."""
    name = f"{stack.local_aws.prefix}orders/loaded-burst"
    with cpu_burners():
        started = time.monotonic()
        versions = [stack.put(name, f"loaded-{index}") for index in range(100)]
        written = time.monotonic() - started
        last = versions[-1]
        stack.wait_for(
            lambda: stack.values(name) == [("loaded-99", last)] * 10,
            timeout=120,
            what="every instance at the last version",
        )
        objects = stack.wait_for(
            lambda: (
                (items := stack.refreshes_of(name))
                and all((i.get("status") or {}).get("phase") in FINISHED for i in items)
                and items
            ),
            timeout=120,
            what="every rollout of the burst finished",
        )
    phases = sorted((o["spec"]["parameter"]["version"], o["status"]["phase"]) for o in objects)
    print(f"\nloaded burst of 100 writes in {written:.2f} s: {len(objects)} rollouts: {phases}")
    # at most three for a burst of up to 3 s, 2 + ceil((D - 1 s) / 2 s) for a longer one
    bound = max(3, 2 + math.ceil(max(0.0, written - 1.0) / 2.0))
    assert len(objects) <= bound, (written, phases)
    assert phases[-1] == (last, "Succeeded"), phases


def test_with_the_api_server_down_the_message_stays_and_the_change_lands_after(stack: Stack) -> None:
    name = f"{stack.local_aws.prefix}orders/outage"
    stack.control_plane.stop_apiserver()
    try:
        version = stack.put(name, "during-outage")
        stack.wait_for(
            lambda: "not created yet" in stack.operator.log_text(), timeout=30, what="a failed create attempt"
        )
        visible, in_flight = stack.queue_depth()
        assert visible + in_flight == 1, (visible, in_flight)
        assert stack.values(name) == [("<missing>", 0)] * 10
    finally:
        stack.control_plane.start_apiserver()
    rollout = stack.wait_phase(name, version, {"Succeeded"}, timeout=120)
    assert rollout["status"]["progress"] == "10/10"
    assert stack.values(name) == [("during-outage", version)] * 10
    stack.wait_for(lambda: stack.queue_depth() == (0, 0), timeout=30, what="the message deleted once created")
