"""Row: fan-out latency for 10, 100 and 1,000 instances (the operator's FanOut engine, warm channels).

Reuses bench/fanout_latency.py: 10 instances are real config-service processes; 100 and 1,000 are that
many distinct endpoints (own address 127.1.x.y, own port, own ConfigCache + Refresher + RefreshServicer
from config_service) served by 2 processes, because 1,000 real processes do not fit on 2 cores. What is
timed is FanOut.run() start → last acknowledgment, the part of "consumer has the event → last ack" that
grows with the fleet; the consumer's own steps before it (GetParameter, creating the ConfigRefresh) are
in the whole-path row, which measures everything.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench import fanout_latency
from bench.common import Check, RowResult, fmt_ms, percentile, say
from bench.targets import FANOUT_100_P99_MS

TARGETS = {100: FANOUT_100_P99_MS}  # the targets table holds none for 1,000 (the whole path has one)


def run(*, sizes: list[int], runs: int, plots: Path) -> RowResult:
    result = RowResult(
        title="Fan-out latency (FanOut.run → last acknowledgment)",
        method=__doc__ or "",
    )
    rows: list[list[str]] = []
    series: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as scratch:
        for size in sizes:
            backend: Any = (
                fanout_latency.RealBackend(size, Path(scratch) / f"real-{size}")
                if size <= 10
                else fanout_latency.LightBackend(size, kind="embedded", processes=2)
            )
            try:
                cold, samples, bare = asyncio.run(fanout_latency._measure(backend, runs))
            finally:
                backend.close()
            acks = [sample.to_last_ack_ms for sample in samples]
            series[size] = acks
            kind = "real config-service processes" if size <= 10 else "endpoints in 2 processes"
            p50, p99 = percentile(acks, 50), percentile(acks, 99)
            rows.append(
                [
                    str(size),
                    kind,
                    fmt_ms(cold.to_last_ack_ms),
                    fmt_ms(p50),
                    fmt_ms(p99),
                    fmt_ms(max(acks)),
                    fmt_ms(percentile(bare, 50)),
                    str(len(acks)),
                ]
            )
            say(
                f"  fan-out {size:>5}: p50 {p50:.1f} ms  p99 {p99:.1f} ms"
                f"  (cold {cold.to_last_ack_ms:.1f} ms)"
            )
            if size in TARGETS:
                result.checks.append(
                    Check(
                        what=f"consumer has event → last of {size:,} acknowledged (fan-out part)",
                        target=f"p99 ≤ {TARGETS[size]:.0f} ms",
                        measured=f"p99 {fmt_ms(p99)} (p50 {fmt_ms(p50)})",
                        met=p99 <= TARGETS[size],
                    )
                )
    result.tables.append(
        (["instances", "backend", "cold", "p50", "p99", "max", "bare gather p50", "runs"], rows)
    )
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.boxplot([series[s] for s in sizes], tick_labels=[f"{s:,}" for s in sizes], showfliers=True)
    axis.set_yscale("log")
    axis.set_xlabel("instances")
    axis.set_ylabel("FanOut.run → last ack (ms)")
    axis.set_title("Fan-out latency, warm channels")
    for size, target in TARGETS.items():
        if size in sizes:
            axis.plot(sizes.index(size) + 1, target, "r_", markersize=25)
    figure.tight_layout()
    path = plots / "fanout.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    result.plots.append(path)
    result.notes.append(
        "Red mark: the p99 target of the targets table. Bare gather = asyncio.gather of stub.Refresh,"
        " no engine."
    )
    return result
