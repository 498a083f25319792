"""Row: the whole path to 300 real config-service processes, and how much of it is the 2 shared cores.

Why: 300 processes is the nearest thing to a fleet this machine holds, but on one 2-core host every
instance's refresh handling, the operator, kube-apiserver and local AWS all take turns on the same two CPUs,
which no real fleet (one instance per pod, on many nodes) does. The stack is the shared one (devstack.stack,
as the `path` row: kube-apiserver, local AWS, N real instances as Ready pods synced by podSync, the
operator as it ships). Each change is timed as the `path` row times it (PutParameter returned → the
ConfigRefresh's last acknowledgment), one after another.

What the cores did, per change, between PutParameter returning and the rollout being final:
- the machine's CPU busy share (/proc/stat) and the most runnable tasks seen (sampled every 20 ms);
- CPU time used by the instances together and by the operator (every thread: each process's CPU-time clock);
- the instances' own apply times (the "refresh" log line each writes, ms resolution): first and last
  applied after PutParameter returned, and their spread.
The floor the cores set: (instances' + operator's CPU seconds) / 2 cores is the shortest time that work can
take on this machine, whatever the design; the row reports it beside the measured latency.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import RowResult, cpu_seconds, cpu_seconds_of, fmt_ms, percentile, say
from bench.path import Rollouts, timed_change
from devstack.stack.builder import Stack


def busy_idle() -> tuple[int, int]:
    """(busy, idle) jiffies of all CPUs together, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, idle


class RunQueue:
    """Samples /proc/stat's procs_running every 20 ms; `peak()` since the last `reset()`."""

    def __init__(self) -> None:
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for line in Path("/proc/stat").read_text().splitlines():
                if line.startswith("procs_running"):
                    self._peak = max(self._peak, int(line.split()[1]))

    def reset(self) -> None:
        self._peak = 0

    def peak(self) -> int:
        return self._peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def apply_times(stack: Stack, name: str, value_version: int) -> list[float]:
    """Wall-clock times (s) at which each instance logged applying `name` at `value_version`."""
    found = []
    for instance in stack.fleet:
        for line in reversed(instance.log_path.read_text(errors="replace").splitlines()):
            if f'"version": {value_version}' not in line or name not in line:
                continue
            record = json.loads(line)
            if record.get("message") == "refresh" and record.get("result") == "applied":
                found.append(datetime.fromisoformat(record["time"]).timestamp())
                break
    return found


def run(*, instances: int, changes: int) -> RowResult:
    result = RowResult(
        title=f"Whole path to {instances} real instances on 2 shared cores", method=__doc__ or ""
    )
    say(f"  starting the whole stack with {instances} config-service instances ...")
    started = time.monotonic()
    stack = Stack.start(instances=instances, namespace=f"bench-fleet-{instances}")
    say(f"  stack up in {time.monotonic() - started:.0f} s")
    security = stack.security_name()
    rollouts = Rollouts(stack)
    queue = RunQueue()
    per_change: list[dict[str, Any]] = []
    try:
        name = f"{stack.local_aws.prefix}bench/fleet/flag"
        timed_change(stack, rollouts, name, "warm-up")
        pids = [instance.pid for instance in stack.fleet]
        for index in range(changes):
            fleet_cpu = cpu_seconds_of(pids)
            operator_cpu = cpu_seconds(stack.operator.pid)
            busy, idle = busy_idle()
            queue.reset()
            put_ms, commit_ms, returned, version = timed_change(stack, rollouts, name, f"value-{index}")
            busy_after, idle_after = busy_idle()
            peak = queue.peak()
            fleet_used = cpu_seconds_of(pids) - fleet_cpu
            operator_used = cpu_seconds(stack.operator.pid) - operator_cpu
            applied = [moment - returned for moment in apply_times(stack, name, version)]
            per_change.append(
                {
                    "put_ms": put_ms,
                    "commit_ms": commit_ms,
                    "busy": (busy_after - busy) / max(1, busy_after - busy + idle_after - idle),
                    "peak_runnable": peak,
                    "fleet_cpu": fleet_used,
                    "operator_cpu": operator_used,
                    "applied": applied,
                }
            )
            say(
                f"  change {index + 1}/{changes}: {fmt_ms(put_ms)}; CPU busy"
                f" {per_change[-1]['busy']:.0%}, peak runnable {peak}; instances {fleet_used:.2f} s CPU,"
                f" operator {operator_used:.2f} s; {len(applied)} apply times"
            )
    finally:
        queue.stop()
        rollouts.close()
        stack.stop()
    put = [c["put_ms"] for c in per_change]
    floor = [(c["fleet_cpu"] + c["operator_cpu"]) / 2 * 1000 for c in per_change]
    spread = [(max(c["applied"]) - min(c["applied"])) * 1000 for c in per_change if len(c["applied"]) > 1]
    first = [min(c["applied"]) * 1000 for c in per_change if c["applied"]]
    rows = [
        ["PutParameter returned → last ack", fmt_ms(percentile(put, 50)), fmt_ms(percentile(put, 99))],
        [
            "commit → last ack (status.latencyMs)",
            fmt_ms(percentile([c["commit_ms"] for c in per_change], 50)),
            fmt_ms(percentile([c["commit_ms"] for c in per_change], 99)),
        ],
        [
            "first instance applied (after PutParameter returned; instance log, ms resolution)",
            fmt_ms(percentile(first, 50)) if first else "?",
            fmt_ms(percentile(first, 99)) if first else "?",
        ],
        [
            "first → last instance applied",
            fmt_ms(percentile(spread, 50)) if spread else "?",
            fmt_ms(percentile(spread, 99)) if spread else "?",
        ],
        [
            "CPU the change used: instances + operator, per 2 cores (the floor on this machine)",
            fmt_ms(percentile(floor, 50)),
            fmt_ms(percentile(floor, 99)),
        ],
        [
            "instances' CPU per instance per change",
            f"{percentile([c['fleet_cpu'] for c in per_change], 50) / instances * 1e3:.2f} ms",
            f"{percentile([c['fleet_cpu'] for c in per_change], 99) / instances * 1e3:.2f} ms",
        ],
        [
            "operator CPU per change",
            fmt_ms(percentile([c["operator_cpu"] for c in per_change], 50) * 1e3),
            fmt_ms(percentile([c["operator_cpu"] for c in per_change], 99) * 1e3),
        ],
        [
            "machine CPU busy during the change",
            f"{percentile([c['busy'] for c in per_change], 50):.0%}",
            f"{percentile([c['busy'] for c in per_change], 99):.0%}",
        ],
        [
            "most runnable tasks seen (2 CPUs)",
            str(percentile([c["peak_runnable"] for c in per_change], 50)),
            str(max(c["peak_runnable"] for c in per_change)),
        ],
    ]
    result.tables.append((["per change", "p50", "p99 (max at this count)"], rows))
    share = percentile(floor, 50) / percentile(put, 50)
    fleet_ms = percentile([c["fleet_cpu"] for c in per_change], 50) / 2 * 1000
    runnable = percentile([c["peak_runnable"] for c in per_change], 50)
    result.notes.append(
        f"{len(per_change)} changes to {instances} instances, the operator's Refresh calls over {security}."
        " At the median, the CPU work of one change"
        f" (instances + operator) needs {fmt_ms(percentile(floor, 50))} of the 2 cores, {share:.0%} of the"
        f" measured {fmt_ms(percentile(put, 50))}. The instances' part of it ({fmt_ms(fleet_ms)} of the 2"
        " cores) is what a real fleet, one instance per pod on many nodes, runs in parallel; the rest of the"
        f" time is waiting for a CPU (up to {runnable} runnable tasks on 2 CPUs at the median change) behind"
        " the other instances, kube-apiserver, etcd, local AWS and whatever else the machine ran, none of it"
        " counted in that CPU figure."
    )
    return result
