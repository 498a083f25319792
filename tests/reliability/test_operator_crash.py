"""Fault 1: the operator SIGKILLed at random points of rollouts and restarted: zero changes lost.

Each round writes a new key, kills the operator after a random delay (before the event is received,
while the object is created, during the fan-out or after it), restarts it and moves on. At the end every
key is on every instance at its version, with exactly one ConfigRefresh each, Succeeded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import VersionWatch, assert_converged

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
    assert_converged(stack.local_aws, stack.fleet, names, timeout=180)
    for name in names:
        rollout = stack.wait_phase(name, 1, {"Succeeded"}, timeout=120)
        assert rollout["status"]["progress"] == f"{len(stack.fleet)}/{len(stack.fleet)}"
        assert len(stack.refreshes_of(name)) == 1, name
    stack.wait_for(lambda: stack.queue_depth() == (0, 0), timeout=60, what="every message deleted")
    watch.assert_monotonic()
    print(
        f"\noperator crash: {kills} SIGKILLs at {delays} s after the write, {len(stack.fleet)} instances, "
        f"0 lost, all converged {time.monotonic() - started:.1f} s after the first write"
    )


def test_operator_killed_at_random_points_loses_no_change(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(
        20, visibility_timeout=6, operator_env=FAST_REDELIVERY, maxConcurrency=2, maxAttempts=20
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
        maxConcurrency=16,
        maxAttempts=20,
        deadlineSeconds=600,
    )
    watch = version_watch(stack.fleet, stack.local_aws.prefix, interval=2.0)
    _crash_rounds(stack, watch, kills=10, seed=10)
