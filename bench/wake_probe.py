"""The machine's part of an instance's wake-up cost: the same plain Python work, back to back and after
the process has slept.

A config-service instance called 50 ms apart uses about three times the CPU per Refresh that it uses
called back to back (bench/instance_cost.py). That could be the software waking (the event loop, gRPC's
poller threads) or the machine: while a process sleeps, whatever else runs on the host takes over the
CPU's caches and TLB, and the next burst refetches its working set. This probe separates the two. It
runs, in a process of its own, work that has no event loop, no gRPC, no thread and no I/O: the same
burst of dictionary lookups, string building, JSON and hashing over a fixed working set (deterministic:
one seed), and times each burst by the thread's CPU clock, after each gap. If the burst grows after a
sleep as the Refresh does, the growth is the machine's and no change to the instance's code removes it;
only less work per call (a smaller working set) shrinks it.

`python -m bench.wake_probe --gaps 0,0.05 --calls 200` prints one JSON object: gap (s) → median CPU ms
per burst. `measure` runs it as a child process and returns `WakeCost`s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

OBJECTS = 100_000  # records in the working set: a few tens of MiB
PICKS = 1_500  # records one burst reads, scattered over the working set
SEED = 20  # the same working set and the same picks in every run


def working_set(objects: int) -> list[dict[str, object]]:
    return [{"name": f"/config/t{i % 97}/key{i}", "version": i, "value": str(i) * 3} for i in range(objects)]


def burst(records: Sequence[dict[str, object]], picks: Sequence[int]) -> int:
    """One call's worth of plain Python work over `records`: what it returns only keeps it from being
    optimised away."""
    total = 0
    for index in picks:
        record = records[index]
        total += len(f"{record['name']}={record['value']}")
    blob = json.dumps([records[index] for index in picks[:40]]).encode()
    return total + hashlib.sha256(blob).digest()[0]


def median_ms(gap: float, calls: int, records: Sequence[dict[str, object]], picks: Sequence[int]) -> float:
    """Median thread CPU per burst, in ms, each burst after sleeping `gap` seconds (none when 0)."""
    spent: list[float] = []
    for _ in range(calls):
        if gap > 0:
            time.sleep(gap)
        before = time.thread_time()
        burst(records, picks)
        spent.append(time.thread_time() - before)
    return statistics.median(spent) * 1e3


def run(gaps: Sequence[float], calls: int, objects: int = OBJECTS) -> dict[float, float]:
    chooser = random.Random(SEED)
    records = working_set(objects)
    picks = [chooser.randrange(objects) for _ in range(PICKS)]
    median_ms(0.0, 20, records, picks)  # warm before the first measured gap
    return {gap: median_ms(gap, calls, records, picks) for gap in gaps}


@dataclass(frozen=True)
class WakeCost:
    """Median CPU ms of one plain-Python burst after sleeping `gap` seconds (0: back to back)."""

    gap: float
    ms: float


def parse(output: str) -> list[WakeCost]:
    """The child's JSON line → costs in gap order; a clear error when it printed something else."""
    try:
        answer = json.loads(output.strip().splitlines()[-1])
        return sorted((WakeCost(float(gap), float(ms)) for gap, ms in answer.items()), key=lambda c: c.gap)
    except (IndexError, ValueError, AttributeError) as error:
        raise RuntimeError(f"bench.wake_probe printed no result: {output!r}") from error


def measure(gaps: Sequence[float], calls: int, *, objects: int = OBJECTS) -> list[WakeCost]:
    """`run` in a process of its own, so that its working set is only this probe's."""
    command = [
        sys.executable,
        "-m",
        "bench.wake_probe",
        "--gaps",
        ",".join(f"{gap:g}" for gap in gaps),
        "--calls",
        str(calls),
        "--objects",
        str(objects),
    ]
    root = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"bench.wake_probe gave no answer in {error.timeout:.0f} s: {command}") from error
    if done.returncode != 0:
        raise RuntimeError(f"bench.wake_probe failed ({done.returncode}): {done.stderr.strip()}")
    return parse(done.stdout)


def describe(costs: Sequence[WakeCost]) -> str:
    """One line for the console: CPU per burst, by gap."""
    return "; ".join(f"gap {cost.gap * 1e3:.0f} ms: {cost.ms:.2f} ms per burst" for cost in costs)


def warm_and_after(costs: Sequence[WakeCost], gap: float) -> tuple[float, float]:
    """(back to back, after `gap`) from `costs`; a clear error when either was not measured."""
    by_gap = {cost.gap: cost.ms for cost in costs}
    if 0.0 not in by_gap or gap not in by_gap:
        raise RuntimeError(f"bench.wake_probe measured gaps {sorted(by_gap)}, not 0 and {gap:g}")
    return by_gap[0.0], by_gap[gap]


def header(gap: float) -> list[str]:
    """The head of the table `row` fills."""
    return [
        "what ran, nothing else running",
        "CPU per call, back to back",
        f"after {gap * 1e3:.0f} ms idle",
        "after idle / back to back",
    ]


def row(label: str, warm_ms: float, woken_ms: float) -> list[str]:
    return [label, f"{warm_ms:.2f} ms", f"{woken_ms:.2f} ms", f"x{woken_ms / warm_ms:.1f}"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.wake_probe", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--gaps", default="0,0.05", help="seconds slept before each burst, comma separated")
    parser.add_argument("--calls", type=int, default=200, help="bursts per gap")
    parser.add_argument("--objects", type=int, default=OBJECTS, help="records in the working set")
    args = parser.parse_args(argv)
    gaps = [float(gap) for gap in args.gaps.split(",")]
    print(json.dumps({f"{gap:g}": ms for gap, ms in run(gaps, args.calls, args.objects).items()}))


if __name__ == "__main__":
    main()
