"""Fault 8: Cloud Map lists an instance whose process is gone: it is recorded as unreachable and the
others are not held back: they hold the change while the rollout is still retrying the dead one.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

from tests.reliability.checks import FINISHED, VersionWatch, assert_converged


def test_an_instance_listed_but_gone_is_named_and_delays_no_one(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(10, timeoutSeconds=1, maxAttempts=20, deadlineSeconds=25)
    gone = stack.fleet[4]
    gone.kill()  # SIGKILL: the process is gone, its Cloud Map registration stays
    healthy = [instance for instance in stack.fleet if instance is not gone]
    watch = version_watch(healthy, stack.local_aws.prefix)
    name = f"{stack.local_aws.prefix}gone/key"
    started = time.monotonic()
    version = stack.put(name, "for-the-living")
    assert_converged(stack.local_aws, healthy, [name], timeout=60)
    healthy_done = time.monotonic() - started
    (rollout,) = stack.refreshes_of(name)
    assert (rollout.get("status") or {}).get("phase") not in FINISHED, (
        "the healthy instances should hold the change while the dead one is still being retried"
    )
    rollout = stack.wait_phase(name, version, FINISHED, timeout=90)
    status = rollout["status"]
    assert status["phase"] == "PartiallyFailed", status
    assert (status["targets"], status["refreshed"], status["failed"]) == (10, 9, 1)
    failed = [entry for entry in status["instances"] if entry["result"] == "Failed"]
    assert [entry["id"] for entry in failed] == [gone.instance_id]
    assert any(code in failed[0]["error"] for code in ("UNAVAILABLE", "CIRCUIT_OPEN")), failed
    watch.assert_monotonic()
    took = (
        datetime.datetime.fromisoformat(status["completedAt"])
        - datetime.datetime.fromisoformat(status["startedAt"])
    ).total_seconds()
    print(
        f"\ngone instance: 9 healthy instances converged in {healthy_done:.2f} s; the rollout ended "
        f"{status['phase']} after {took:.1f} s (deadline 25 s), the dead one: "
        f"{failed[0]['error'][:80]!r} after {failed[0]['attempts']} attempts"
    )
