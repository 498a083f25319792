"""Writes docs/benchmarks.md: the targets table, machine and command, the headline comparison, the results
against the targets, every table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.common import Check, Machine, RowResult, percentile
from bench.polling import derived, derived_in_step
from bench.targets import RULES, table_rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _mark(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def headline(push: dict[str, Any], polls: list[dict[str, Any]], plots: Path) -> tuple[str, Path | None]:
    """The push path beside the polling caches: staleness p50/p99 and Parameter Store reads."""
    if "push_p99_ms" not in push or not polls:
        return "(the headline needs the whole-path and polling rows; one of them did not run)", None
    push50, push99 = push["push_p50_ms"] / 1000, push["push_p99_ms"] / 1000
    fleet = push.get("fleet", 0)
    idle_seconds, idle_calls, _ = push.get("idle", (0, 0, {}))
    rows = [
        [
            f"push (config-refresh), {fleet} instances",
            f"{push50 * 1000:.0f} ms",
            f"{push99 * 1000:.0f} ms",
            "measured",
            f"{idle_calls / max(idle_seconds, 1) * 60:.0f} while idle",
            f"{push.get('reads_per_change', {}).get(fleet, float('nan')):.2f}",
            "1x",
        ]
    ]
    for poll in polls:
        ttl, n = poll["ttl"], poll["instances"]
        measured = poll["staleness_s"]
        low50, high50 = derived_in_step(ttl, 50), derived(ttl, n, 50)
        low99, high99 = derived_in_step(ttl, 99), derived(ttl, n, 99)
        per_instance_minute = poll["reads_per_minute"] / n
        scaled = f"{poll['reads_per_minute']:.0f}, idle or not"
        if fleet and fleet != n:
            scaled += (
                f" ({per_instance_minute:.1f} per instance: {per_instance_minute * fleet:.0f} at {fleet})"
            )
        rows.append(
            [
                f"TTL/polling cache {ttl:g} s, {n} instances",
                f"{low50:.1f}-{high50:.1f} s derived; {percentile(measured, 50):.1f} s measured",
                f"{low99:.1f}-{high99:.1f} s derived; max {max(measured):.1f} s measured",
                f"{len(measured)} writes measured + derived",
                scaled,
                f"{n} (one per instance)",
                f"{low99 / push99:,.0f}x higher p99 staleness (at least)",
            ]
        )
    text = _table(
        [
            "how the fleet learns of a change",
            "staleness p50",
            "staleness p99",
            "basis",
            "Parameter Store reads per minute",
            "reads per change",
            "vs push",
        ],
        rows,
    )
    figure, axis = plt.subplots(figsize=(6, 3.5))
    labels = ["push"] + [f"poll {p['ttl']:g} s" for p in polls]
    p99s = [push99] + [derived_in_step(p["ttl"], 99) for p in polls]
    p50s = [push50] + [derived_in_step(p["ttl"], 50) for p in polls]
    positions = range(len(labels))
    axis.bar([x - 0.2 for x in positions], p50s, width=0.4, label="p50")
    axis.bar([x + 0.2 for x in positions], p99s, width=0.4, label="p99")
    for index, poll in enumerate(polls, start=1):
        axis.scatter(
            [index] * len(poll["staleness_s"]),
            poll["staleness_s"],
            color="black",
            s=10,
            zorder=3,
            label="measured writes" if index == 1 else None,
        )
    axis.set_yscale("log")
    axis.set_xticks(list(positions), labels)
    axis.set_ylabel("write → every instance serves it (s)")
    axis.set_title("Staleness: push vs TTL/polling cache")
    axis.set_xlabel("bars: push measured, polling derived (in step); dots: measured writes")
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
) -> None:
    def rel(path: Path) -> str:
        return path.relative_to(out.parent).as_posix()

    parts = [
        *targets_section(),
        "## This run",
        "",
        "Generated by `make bench` (`.venv/bin/python -m bench`); every figure below comes from the run"
        " described here.",
        "",
        _table(
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
        "## Headline: push against a TTL/polling cache, same run",
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
