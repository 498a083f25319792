"""Fault 9 (load): a steady stream of changes over several keys and instances: all converge, the
commit-to-last-acknowledgment latency is reported (p50/p99 of status.latencyMs), and the operator's
resident memory after warm-up is compared with the end (asserted in the long variant only).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import FINISHED, VersionWatch, assert_converged, percentile, refreshes, rss_kib, wait_for

from devstack.controlplane import CommandError


def _write_steadily(stack: Any, name: str, rate: float, started: float, seconds: float) -> int:
    """PutParameter `name` every 1/rate s from `started` for `seconds`; returns how many were written."""
    writes = 0
    next_at = started
    while time.monotonic() - started < seconds:
        stack.put(name, f"load-{writes}")
        writes += 1
        next_at += 1 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    return writes


def _all_finished(stack: Any) -> list[dict[str, Any]] | None:
    """Every ConfigRefresh once all are finished; None before, or when this poll's list call fails (an
    API server saturated by the load may drop a request: the next poll asks again)."""
    try:
        items: list[dict[str, Any]] = refreshes(stack.control_plane, stack.namespace)
    except CommandError:
        return None
    if items and all((i.get("status") or {}).get("phase") in FINISHED for i in items):
        return items
    return None


def _load(
    stack: Any, watch: VersionWatch, *, rate: float, seconds: float, keys: int, assert_memory: bool
) -> None:
    names = [f"{stack.local_aws.prefix}load/key-{index}" for index in range(keys)]
    pid = stack.operator._process.pid  # the launcher keeps its Popen private
    for name in names:  # warm-up: channels, clients, caches
        stack.put(name, "warm-up")
    assert_converged(stack.local_aws, stack.fleet, names, timeout=120)
    time.sleep(2)
    rss_warm = rss_kib(pid)
    started = time.monotonic()
    # One writer thread per key, each at rate/keys: a single sequential writer is bound by PutParameter's
    # round trip and fell to 18.6/s on a loaded machine; per-key threads keep each key's versions in order.
    with ThreadPoolExecutor(max_workers=keys) as pool:
        counts = list(
            pool.map(lambda name: _write_steadily(stack, name, rate / keys, started, seconds), names)
        )
    writes = sum(counts)
    achieved = writes / (time.monotonic() - started)
    written_at = time.monotonic()
    assert_converged(stack.local_aws, stack.fleet, names, timeout=300)
    converged_after = time.monotonic() - written_at
    objects = wait_for(
        lambda: _all_finished(stack),
        timeout=300,
        interval=1,
        what="every rollout finished",
    )
    time.sleep(2)
    rss_end = rss_kib(pid)
    phases = [o["status"]["phase"] for o in objects]
    latencies = [float(o["status"]["latencyMs"]) for o in objects if o["status"]["phase"] == "Succeeded"]
    assert "Failed" not in phases, sorted(set(phases))
    assert "PartiallyFailed" not in phases, sorted(set(phases))
    assert stack.operator.returncode is None
    watch.assert_monotonic()
    growth = (rss_end - rss_warm) / rss_warm
    print(
        f"\nload: {writes} writes at {achieved:.1f}/s for {seconds:.0f} s over {keys} keys, "
        f"{len(stack.fleet)} instances; {len(objects)} rollouts "
        f"({', '.join(f'{p} {phases.count(p)}' for p in sorted(set(phases)))}); converged "
        f"{converged_after:.1f} s after the last write; latencyMs p50 {statistics.median(latencies):.0f}, "
        f"p99 {percentile(latencies, 0.99):.0f}, max {max(latencies):.0f}; operator RSS "
        f"{rss_warm / 1024:.1f} MiB after warm-up, {rss_end / 1024:.1f} MiB at the end ({growth:+.1%})"
    )
    # The load must have been offered for the figures to mean anything (a shared machine may not keep up).
    assert achieved >= 0.8 * rate, f"offered {achieved:.1f} changes/s, meant {rate}/s"
    if assert_memory:
        assert abs(growth) <= 0.10, (rss_warm, rss_end)


def test_ten_changes_per_second_over_five_keys(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(10)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    _load(stack, watch, rate=10, seconds=10, keys=5, assert_memory=False)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fifty_changes_per_second_for_a_minute_on_a_hundred_instances(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(100, fleet_timeout=600, maxConcurrency=100)
    watch = version_watch(stack.fleet, stack.local_aws.prefix, interval=2.0)
    _load(stack, watch, rate=50, seconds=60, keys=20, assert_memory=True)
