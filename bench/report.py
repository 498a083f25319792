"""Writes docs/benchmarks.md: the targets table, machine and command, the headline comparison, the results
against the targets, every table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.common import Check, Machine, RowResult
from bench.targets import RULES, table_rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _mark(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def push_fleets(push: dict[str, Any]) -> dict[int, Any]:
    """Push staleness (a bench.staleness.Summary) by fleet size, smallest first; a row stored before the
    sizes were kept apart holds its largest fleet's only."""
    by_fleet = dict(push.get("staleness_by_fleet") or {})
    if not by_fleet and "staleness" in push:
        by_fleet[int(push.get("fleet", 0))] = push["staleness"]
    return dict(sorted(by_fleet.items()))


def push_side(by_fleet: dict[int, Any], fleet: int) -> tuple[int, Any]:
    """Of `push_fleets`, the measurement to set beside a polling fleet: the same size if one was
    measured, else the largest (and the caller says the sizes differ)."""
    if fleet in by_fleet:
        return fleet, by_fleet[fleet]
    largest = max(by_fleet)
    return largest, by_fleet[largest]


def headline(push: dict[str, Any], polls: list[dict[str, Any]], plots: Path) -> tuple[str, Path | None]:
    """The push path beside the polling caches: staleness p50/p99, all measured by the same GetConfig probe
    (per instance, over every write), and Parameter Store reads per minute while nothing changes."""
    polls = [poll for poll in polls if "staleness" in poll]  # rows cached before the probe: not comparable
    if "staleness" not in push or not polls:
        return "(the headline needs the whole-path and polling rows; one of them did not run)", None
    fleet = push.get("fleet", 0)
    pushed = push_fleets(push)
    idle = push.get("idle_cost")
    idle_text = (
        f"{idle['per_minute']:.1f} ({idle['per_minute'] / idle['instances']:.2f} per instance): TTL net"
        f" {idle['ttl_per_minute']:.1f} + resync {idle['resync_per_minute']:.1f}; push path"
        f" {idle['push_reads']}"
        if idle
        else "not measured"
    )
    rows = [
        [
            f"push (config-refresh), {size} instances",
            f"{summary.p50 * 1000:.0f} ms",
            f"{summary.p99 * 1000:.0f} ms",
            f"{summary.samples} ({size} instances x {summary.samples // max(size, 1)} changes)",
            idle_text if size == fleet else f"measured at {fleet} instances only",
            f"{push.get('reads_per_change', {}).get(size, float('nan')):.2f}",
            "1x",
        ]
        for size, summary in pushed.items()
    ]
    for poll in polls:
        s = poll["staleness"]
        size, beside = push_side(pushed, poll["instances"])
        rows.append(
            [
                f"TTL/polling cache {poll['ttl']:g} s, {poll['instances']} instances",
                f"{s.p50:.1f} s",
                f"{s.p99:.1f} s",
                f"{s.samples} ({poll['writes']} writes x {poll['instances']} instances)",
                f"{poll['reads_per_minute']:.0f} ({poll['reads_per_minute'] / poll['instances']:.1f}"
                " per instance), idle or not",
                f"none of its own: each of {poll['instances']} instances re-reads every TTL, change or not",
                f"{s.p99_low / beside.p99:,.0f}x higher p99 than push at {size} instances"
                + "".join(
                    f"; {s.p99_low / other.p99:,.0f}x than at {other_size}"
                    for other_size, other in pushed.items()
                    if other_size != size
                ),
            ]
        )
    parameters = idle["parameters"] if idle else polls[0].get("keys", "?")
    text = _table(
        [
            "how the fleet learns of a change",
            "staleness p50",
            "staleness p99",
            "samples (write, instance)",
            f"Parameter Store reads / min while idle ({parameters} parameters cached)",
            "reads per change",
            "vs push",
        ],
        rows,
    )
    text += (
        "\n\nStaleness = PutParameter returned → that instance serves the new version, measured on both"
        " sides by the same client probing GetConfig on every instance (bench/staleness.py); p50/p99 over"
        " every (write, instance). The ratio divides the polling p99's low bound by push's p99 (the"
        " probe's resolution cannot flatter it), push measured on a fleet of the polling fleet's size"
        " (and beside it on the largest: there every instance shares the machine's 2 cores with 99"
        " others while it applies the change, which a fleet's pods, each on its own CPU, do not; the"
        " whole-path section gives the CPU floor). The push figures hold no EventBridge → SQS delivery:"
        " the local stack publishes inside moto's PutParameter (see the whole-path section)."
    )
    if idle:
        text += (
            f" Idle reads for push: counted over {idle['seconds']:.0f} s with the TTL net and resync"
            f" shortened {idle['speedup']}x, scaled back to the defaults (TTL 600 s, resync 300 s)."
        )
    figure, axis = plt.subplots(figsize=(6, 3.5))
    labels = [f"push, {size}" for size in pushed] + [f"poll {p['ttl']:g} s, {p['instances']}" for p in polls]
    summaries = list(pushed.values()) + [p["staleness"] for p in polls]
    positions = range(len(labels))
    axis.bar([x - 0.2 for x in positions], [v.p50 for v in summaries], width=0.4, label="p50")
    axis.bar([x + 0.2 for x in positions], [v.p99 for v in summaries], width=0.4, label="p99")
    axis.set_yscale("log")
    axis.set_xticks(list(positions), labels)
    axis.set_ylabel("PutParameter → instance serves it (s)")
    axis.set_title("Staleness per instance: push vs TTL/polling cache")
    axis.set_xlabel("all measured by the same GetConfig probe")
    axis.legend()
    figure.tight_layout()
    path = plots / "staleness.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return text, path


def targets_section() -> list[str]:
    """The opening of docs/benchmarks.md: the targets the project holds itself to, and how they count."""
    return [
        "# Benchmarks",
        "",
        "## Targets",
        "",
        "The numbers the project holds itself to (kept in `bench/targets.py`; the checks below take their"
        " thresholds from it). Only `make bench` measures them, and reports each as met or not met; nothing"
        " in the test suite asserts a timing.",
        "",
        _table(["what", "target", "measured by (`python -m bench --only ROW`)"], table_rows()),
        "",
        "A row counts against its target only if it is measured this way:",
        "",
        *[f"- {rule}" for rule in RULES],
        "",
    ]


def write(
    *,
    out: Path,
    machine: Machine,
    command: str,
    results: list[RowResult],
    checks: list[Check],
    headline_text: str,
    headline_plot: Path | None,
    failures: list[str],
    provenance: list[str],
    runs: list[tuple[str, Machine | None, list[str]]] | None = None,
    same_run: bool = True,
) -> None:
    def rel(path: Path) -> str:
        # a report written elsewhere (`--out /tmp/x.md --merge`) links to the plots its merged rows
        # keep under docs/benchmarks/: relative, climbing out of its own folder
        return Path(os.path.relpath(path.resolve(), out.parent.resolve())).as_posix()

    several = runs is not None and len(runs) > 1
    parts = [
        *targets_section(),
        "## This run" if not several else "## The runs",
        "",
        "Generated by `make bench` (`.venv/bin/python -m bench`); every figure below comes from the run"
        " described here."
        if not several
        else "Generated by `python -m bench --merge`: the rows below come from these runs on one machine"
        f" ({machine.cpus} CPUs, {machine.memory_gib:.1f} GiB memory, {machine.system}, Python"
        f" {machine.python}); the last command: {command}.",
        "",
        _table(
            ["rows", "run", "commit", "load average (1, 5, 15 min) at start; at the row's end"],
            [
                [
                    ", ".join(names),
                    when,
                    m.commit if m else "?",
                    f"{m.load}; {m.load_end or '?'}" if m else "?",
                ]
                for when, m, names in runs or []
            ],
        )
        if several
        else _table(
            ["", ""],
            [
                ["command", command],
                ["commit", machine.commit],
                ["date", machine.date],
                ["machine", f"{machine.cpus} CPUs, {machine.memory_gib:.1f} GiB memory, {machine.system}"],
                ["Python", machine.python],
                [
                    "load average (1, 5, 15 min)",
                    f"{machine.load} at start; {machine.load_end or '?'} at the end",
                ],
            ],
        ),
        "",
        *(
            [
                f"**The machine was shared and busy** (load average {machine.load.split(',')[0]} on"
                f" {machine.cpus} CPUs at the start): latencies below include waiting for a CPU. Counts"
                " (Parameter Store calls, rollouts, acknowledgments) do not depend on load.",
                "",
            ]
            if float(machine.load.split(",")[0]) > machine.cpus
            else []
        ),
        "Rows and the run that measured them: " + "; ".join(provenance) + ".",
        "",
        "## Headline: push against a TTL/polling cache" + (", same run" if same_run else ""),
        "",
        headline_text,
        "",
    ]
    if headline_plot is not None:
        parts += [f"![staleness]({rel(headline_plot)})", ""]
    parts += [
        "## Results against the targets",
        "",
        _table(
            ["what", "target", "measured", "result"],
            [[c.what, c.target, c.measured, _mark(c.met)] for c in checks],
        ),
        "",
    ]
    if failures:
        parts += ["Rows that did not complete in this run:", ""] + [f"- {f}" for f in failures] + [""]
    for result in results:
        parts += [f"## {result.title}", "", result.method.strip(), ""]
        for header, rows in result.tables:
            parts += [_table(header, rows), ""]
        parts += [f"![{p.stem}]({rel(p)})\n" for p in result.plots]
        parts += [note + "\n" for note in result.notes]
    out.write_text("\n".join(parts).rstrip() + "\n")
