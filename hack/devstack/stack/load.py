"""Sustained load on a stack, for the memory guard (tests/reliability/test_load.py) and the `load` row of
`make bench`: one paced writer thread per key, the operator's resident memory read before the load (the
baseline) and at chosen moments into it, and the messages the operator holds sampled all along.

Why RSS after N and after 3N seconds of the same load, rather than after a warm-up: a warm-up as long as
the window hides growth that lasts as long as the load does (the long load test's warm-up was lengthened
to 60 s after 15 s and 30 s ones failed, docs/reliability.md). An operator whose backlog is bounded
reaches its working size within the first N seconds whatever the machine's speed: a slower machine keeps
more of the backlog in SQS, not in the operator. One that holds the backlog keeps growing from N to 3N
for as long as the machine cannot keep up, the slower the machine the more.

The messages held are what SQS counts as in flight (`ApproximateNumberOfMessagesNotVisible`): received by
the operator and not yet deleted, so the same measure for any operator build.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.stack.builder import Stack


def rss_kib(pid: int) -> int:
    """VmRSS of a process, KiB (from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class LoadRun:
    """What one sustained load did and what the operator's memory and held messages were meanwhile."""

    rate: float
    seconds: float
    keys: int
    writes: int = 0
    elapsed: float = 0.0
    baseline_kib: int = 0
    rss_at: dict[float, int] = field(default_factory=dict)
    """Seconds into the load → the operator's VmRSS (KiB) then."""
    held_max: int = 0
    """Most messages SQS counted in flight (received by the operator, not deleted) in any sample."""
    held_samples: int = 0

    @property
    def achieved(self) -> float:
        return self.writes / self.elapsed if self.elapsed else 0.0

    def growth(self, early: float, late: float) -> float:
        """RSS at `late` against RSS at `early`, as a fraction (0.05 = 5 % more)."""
        return (self.rss_at[late] - self.rss_at[early]) / self.rss_at[early]

    def describe(self) -> str:
        marks = ", ".join(f"{rss / 1024:.1f} MiB after {at:g} s" for at, rss in sorted(self.rss_at.items()))
        return (
            f"{self.writes} writes at {self.achieved:.1f}/s (meant {self.rate:g}/s) over {self.keys} keys"
            f" for {self.elapsed:.0f} s; operator RSS {self.baseline_kib / 1024:.1f} MiB before the load,"
            f" {marks};"
            f" messages held by the operator at most {self.held_max} ({self.held_samples} samples)"
        )


def _write_steadily(stack: Stack, name: str, rate: float, started: float, seconds: float) -> int:
    """PutParameter `name` every 1/rate s from `started` for `seconds`; returns how many were written."""
    writes = 0
    next_at = started
    while time.monotonic() - started < seconds:
        stack.put(name, f"load-{writes}")
        writes += 1
        next_at += 1 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    return writes


def sustain(
    stack: Stack, names: Sequence[str], *, rate: float, seconds: float, marks: Sequence[float]
) -> LoadRun:
    """Write `rate` changes/s spread over `names` for `seconds`, reading the operator's RSS before and at
    each of `marks` (seconds into the load) and sampling the messages it holds about once a second."""
    pid = stack.operator.pid
    if pid is None:
        raise RuntimeError("the operator is not running")
    run = LoadRun(rate=rate, seconds=seconds, keys=len(names), baseline_kib=rss_kib(pid))
    sqs = stack.local_aws.client("sqs")
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            answer = sqs.get_queue_attributes(
                QueueUrl=stack.local_aws.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
            )
            run.held_max = max(
                run.held_max, int(answer["Attributes"]["ApproximateNumberOfMessagesNotVisible"])
            )
            run.held_samples += 1

    sampler = threading.Thread(target=sample, name="load-held-sampler", daemon=True)
    started = time.monotonic()
    sampler.start()
    # One writer thread per key, each at rate/keys: a single sequential writer is bound by PutParameter's
    # round trip and fell to 18.6/s on a loaded machine; per-key threads keep each key's versions in order.
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        counts = [
            pool.submit(_write_steadily, stack, name, rate / len(names), started, seconds) for name in names
        ]
        for mark in sorted(marks):
            time.sleep(max(0.0, started + mark - time.monotonic()))
            run.rss_at[mark] = rss_kib(pid)
        run.writes = sum(count.result() for count in counts)
    run.elapsed = time.monotonic() - started
    done.set()
    sampler.join(10)
    return run


def phases(objects: Sequence[dict[str, Any]]) -> Counter[str]:
    return Counter((item.get("status") or {}).get("phase", "?") for item in objects)


def superseded_mid_fan_out(objects: Sequence[dict[str, Any]]) -> int:
    """Rollouts a newer one superseded after their fan-out had begun (their status counts targets); a
    rollout superseded before it fanned out cost no Refresh call."""
    return sum(
        1
        for item in objects
        if (item.get("status") or {}).get("phase") == "Superseded"
        and (item.get("status") or {}).get("targets")
    )
