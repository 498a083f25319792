"""A Parameter Store write reaches every instance, and the ConfigRefresh says so."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from devstack.stack.builder import Stack
    from devstack.stack.operator import OperatorProcess


def test_a_put_parameter_is_applied_on_every_instance_and_the_rollout_succeeds(stack: Stack) -> None:
    name = f"{stack.local_aws.prefix}orders/db_url"
    version = stack.put(name, "postgres://db-1")
    rollout = stack.wait_phase(name, version, {"Succeeded", "PartiallyFailed", "Failed"})
    status = rollout["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["targets"], status["refreshed"], status["failed"]) == (10, 10, 0)
    assert status["progress"] == "10/10"
    assert {entry["result"] for entry in status["instances"]} <= {"Applied", "Stale"}
    assert stack.values(name) == [("postgres://db-1", version)] * 10
    labels = rollout["metadata"]["labels"]
    assert labels["configrefresh.io/route"] == stack.route
    assert labels["configrefresh.io/version"] == str(version)
    assert "postgres://db-1" not in str(rollout)
    table = stack.kubectl_get()
    row = next(line for line in table.splitlines() if rollout["metadata"]["name"] in line)
    assert "Succeeded" in row, table
    assert "10/10" in row, table
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"


def test_commit_to_last_acknowledgment_latency_for_ten_instances(stack: Stack) -> None:
    """Measures (and prints, never asserts) PutParameter → last acknowledgment over 20 changes."""
    name = f"{stack.local_aws.prefix}latency/probe"
    stack.put(name, "warm-up")
    stack.wait_phase(name, 1, {"Succeeded"})
    commit_to_ack_ms: list[float] = []
    put_to_succeeded_ms: list[float] = []
    for index in range(20):
        started = time.time()
        version = stack.put(name, f"value-{index}")
        rollout = stack.wait_phase(name, version, {"Succeeded"})
        put_to_succeeded_ms.append((time.time() - started) * 1000)
        commit_to_ack_ms.append(float(rollout["status"]["latencyMs"]))
    assert stack.wait_for(
        lambda: stack.values(name) == [("value-19", 21)] * 10, timeout=10, what="final value"
    )

    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    print(
        "\nlatency, 10 instances, 20 changes: PutParameter commit -> last ack (status.latencyMs): "
        f"p50 {statistics.median(commit_to_ack_ms):.0f} ms, p99 {p(commit_to_ack_ms, 0.99):.0f} ms; "
        "PutParameter -> Succeeded seen by kubectl polling: "
        f"p50 {statistics.median(put_to_succeeded_ms):.0f} ms, p99 {p(put_to_succeeded_ms, 0.99):.0f} ms"
    )


def test_finished_rollouts_beyond_the_newest_n_per_parameter_are_deleted(
    stack: Stack, operator_process: Callable[..., OperatorProcess]
) -> None:
    stack.operator.stop()
    stack.operator = operator_process(
        CONFIG_REFRESH_RETENTION_KEEP="2", CONFIG_REFRESH_RETENTION_INTERVAL_SECONDS="1"
    )
    name = f"{stack.local_aws.prefix}orders/retained"
    versions = []
    for index in range(4):
        versions.append(stack.put(name, f"r-{index}"))
        stack.wait_phase(name, versions[-1], {"Succeeded"})
    kept = stack.wait_for(
        lambda: len(items := stack.refreshes_of(name)) == 2 and items,
        timeout=30,
        what="retention down to the newest 2",
    )
    assert sorted(item["spec"]["parameter"]["version"] for item in kept) == versions[-2:]
