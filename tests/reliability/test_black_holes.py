"""Fault 3: 10% of the instances accept TCP and never answer (a listening socket nobody accepts on).

Deadlines hold (the rollout ends within its deadline), it ends PartiallyFailed naming exactly them, their
circuit breakers open; once they answer again within a later rollout's deadline, that one Succeeds.
"""

from __future__ import annotations

import datetime
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.reliability.checks import VersionWatch, assert_converged

DEADLINE = 15


@contextmanager
def black_holes(instances: list[Any]) -> Iterator[list[socket.socket]]:
    """Stop each instance and hold its refresh address with a socket that never accepts."""
    holes = []
    for instance in instances:
        instance.stop()
        hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hole.bind((instance.host, instance.refresh_port))
        hole.listen(64)  # the kernel completes handshakes into the backlog; nobody ever reads
        holes.append(hole)
    try:
        yield holes
    finally:
        for hole in holes:
            hole.close()


def _seconds(status: dict[str, Any]) -> float:
    started = datetime.datetime.fromisoformat(status["startedAt"])
    completed = datetime.datetime.fromisoformat(status["completedAt"])
    return (completed - started).total_seconds()


def _black_hole_run(stack: Any, watch: VersionWatch, holes_count: int) -> None:
    holed = list(stack.fleet)[-holes_count:]
    answering = [instance for instance in stack.fleet if instance not in holed]
    holed_ids = sorted(instance.instance_id for instance in holed)
    name = f"{stack.local_aws.prefix}blackhole/key"
    with black_holes(holed) as holes:
        for instance in holed:  # still registered, as a hung process would be
            stack.local_aws.register_instance(instance.instance_id, instance.host, instance.refresh_port)
        version = stack.put(name, "first")
        first = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"}, timeout=90)
        status = first["status"]
        assert status["phase"] == "PartiallyFailed", status
        failed = sorted(e["id"] for e in status["instances"] if e["result"] == "Failed")
        assert failed == holed_ids
        assert status["failed"] == holes_count
        first_seconds = _seconds(status)
        assert first_seconds <= DEADLINE + 5, f"rollout took {first_seconds} s, deadline {DEADLINE} s"
        assert_converged(stack.local_aws, answering, [name], timeout=10)
        open_breakers = stack.metric("config_refresh_open_circuit_breakers")
        assert open_breakers == holes_count, open_breakers

        version = stack.put(name, "second")
        time.sleep(3)  # they stay silent for the first part of the rollout, then answer
        for hole in holes:
            hole.close()
    for instance in holed:
        instance.start()
    for instance in holed:
        instance.wait_serving()
    second = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"}, timeout=90)
    assert second["status"]["phase"] == "Succeeded", second["status"]
    assert_converged(stack.local_aws, stack.fleet, [name], timeout=30)
    watch.assert_monotonic()
    attempts = {e["id"]: e["attempts"] for e in second["status"]["instances"]}
    print(
        f"\nblack holes: {holes_count}/{len(stack.fleet)} silent; first rollout PartiallyFailed naming "
        f"exactly them in {first_seconds:.1f} s (deadline {DEADLINE} s), {open_breakers:.0f} breakers "
        f"open; second rollout Succeeded in {_seconds(second['status']):.1f} s after they answered, "
        f"their attempts {[attempts[i] for i in holed_ids]}"
    )


def test_silent_instances_fail_within_the_deadline_and_converge_when_they_answer(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(10, timeoutSeconds=1, maxAttempts=20, deadlineSeconds=DEADLINE)
    watch = version_watch(stack.fleet[:9], stack.local_aws.prefix)
    _black_hole_run(stack, watch, holes_count=1)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ten_percent_of_fifty_instances_silent(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(50, fleet_timeout=600, timeoutSeconds=1, maxAttempts=20, deadlineSeconds=DEADLINE)
    watch = version_watch(stack.fleet[:45], stack.local_aws.prefix, interval=1.0)
    _black_hole_run(stack, watch, holes_count=5)
