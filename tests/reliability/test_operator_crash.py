"""Fault 1: the operator SIGKILLed at random points of rollouts and restarted: zero changes lost.

Each round writes a new key, kills the operator after a random delay (before the event is received,
while the object is created, during the fan-out or after it), restarts it and moves on. At the end every
key is on every instance at its version, with exactly one ConfigRefresh each, Succeeded.

A message held by an operator that is killed comes back after the visibility timeout; one held by three
operators in a row is moved to the dead-letter queue by SQS (maxReceiveCount 3, as deployed): that is the
queue's guard against a message that itself kills the operator. The change is then recovered by the
route's resync pass, which reads Parameter Store itself; the test names which keys took that path.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.checks import VersionWatch, assert_converged

RESYNC_SECONDS = 20

# A killed operator cannot hand back a message it holds: it comes back after the visibility timeout.
FAST_REDELIVERY = {"CONFIG_REFRESH_VISIBILITY_EXTENSION_SECONDS": "6"}


def _crash_rounds(stack: Any, watch: VersionWatch, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    names = []
    delays = []
    started = time.monotonic()
    for round_ in range(kills):
        name = f"{stack.local_aws.prefix}crash/key-{round_}"
        names.append(name)
        stack.put(name, f"value-{round_}")
        delay = rng.uniform(0.0, 2.0)
        delays.append(round(delay, 2))
        time.sleep(delay)
        stack.operator.kill()
        stack.operator.start()
        stack.operator.wait_ready()
    assert_converged(stack.local_aws, stack.fleet, names, timeout=180 + 2 * RESYNC_SECONDS)
    triggers = {}
    for name in names:
        rollout = stack.wait_phase(name, 1, {"Succeeded"}, timeout=120)
        assert rollout["status"]["progress"] == f"{len(stack.fleet)}/{len(stack.fleet)}"
        assert len(stack.refreshes_of(name)) == 1, name
        triggers[name.rsplit("/", 1)[1]] = rollout["spec"]["source"]["trigger"]
    stack.wait_for(lambda: stack.queue_depth() == (0, 0), timeout=60, what="every message deleted")
    dead_lettered = _dead_lettered(stack)
    # A change whose event was dead-lettered was brought by the resync, never dropped.
    for name in dead_lettered:
        assert name in names, name
    watch.assert_monotonic()
    by_resync = sorted(key for key, trigger in triggers.items() if trigger == "resync")
    print(
        f"\noperator crash: {kills} SIGKILLs at {delays} s after the write, {len(stack.fleet)} instances, "
        f"0 lost, all converged {time.monotonic() - started:.1f} s after the first write; "
        f"{len(dead_lettered)} event(s) dead-lettered after 3 receives, keys applied by resync: "
        f"{by_resync or 'none'}"
    )


def _dead_lettered(stack: Any) -> list[str]:
    """Parameter names of the change events in the dead-letter queue (read, left in place)."""
    names = []
    answer = stack.sqs.receive_message(
        QueueUrl=stack.local_aws.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=30
    )
    for message in answer.get("Messages", []):
        names.append(json.loads(message["Body"])["detail"]["name"])
    return names


def test_operator_killed_at_random_points_loses_no_change(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(
        20,
        visibility_timeout=6,
        operator_env=FAST_REDELIVERY,
        resync_seconds=RESYNC_SECONDS,
        maxConcurrency=2,
        maxAttempts=20,
    )
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    _crash_rounds(stack, watch, kills=3, seed=1)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_operator_killed_ten_times_during_a_200_instance_rollout_loses_no_change(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(
        200,
        visibility_timeout=6,
        operator_env=FAST_REDELIVERY,
        fleet_timeout=900,
        resync_seconds=RESYNC_SECONDS,
        maxConcurrency=16,
        maxAttempts=20,
        deadlineSeconds=600,
    )
    watch = version_watch(stack.fleet, stack.local_aws.prefix, interval=2.0)
    _crash_rounds(stack, watch, kills=10, seed=10)
