"""The targets table: docs/benchmarks.md opens with it, `make bench` writes it, and the checks use it.

Also the burst row: met only for a burst that took at most the seconds its target names.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench.common import Machine, RowResult  # noqa: E402
from bench.path import burst_check  # noqa: E402
from bench.report import targets_section, write  # noqa: E402
from bench.targets import BURST_SECONDS, TARGETS  # noqa: E402

HOST = Machine(
    cpus=2,
    memory_gib=4.0,
    python="3.11",
    system="Linux",
    commit="abc1234",
    date="2026-12-05 20:00 UTC",
    load="0.5, 0.5, 0.5",
)


def test_docs_benchmarks_opens_with_the_targets_table_bench_writes() -> None:
    opening = "\n".join(targets_section())
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.startswith(opening), "docs/benchmarks.md does not open with bench/targets.py's table"


def test_a_generated_report_opens_with_every_target(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    write(
        out=out,
        machine=HOST,
        command="`make bench`",
        results=[],
        checks=[],
        headline_text="(none)",
        headline_plot=None,
        failures=[],
        provenance=[],
    )
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\n## Targets\n")
    targets = text[: text.index("## This run")]
    for target in TARGETS:
        assert f"| {target.what} | {target.target} |" in targets


def measured_burst(seconds: float, fanned_out: int = 2) -> dict[str, Any]:
    return {
        "writes": 100,
        "seconds": seconds,
        "last_version": 100,
        "rollouts": 3,
        "phases": Counter({"Succeeded": 2, "Superseded": 1}),
        "fanned_out": fanned_out,
        "everywhere": True,
        "regressions": [],
        "samples": 500,
        "reads": 3,
    }


def test_a_burst_within_the_window_with_few_fan_outs_meets_the_row() -> None:
    check = burst_check(measured_burst(1.02))
    assert check.met is True
    assert check.what == "100 writes to one key in 1-3 s"
    assert check.measured.startswith("writes took 1.02 s;")


def test_a_burst_that_took_longer_than_the_row_names_is_not_met_whatever_the_fan_outs() -> None:
    check = burst_check(measured_burst(BURST_SECONDS + 0.5, fanned_out=1))
    assert check.met is False
    assert "longer than 3 s: not the burst the row names" in check.measured


def test_too_many_fan_outs_are_not_met() -> None:
    assert burst_check(measured_burst(1.5, fanned_out=4)).met is False


def test_a_report_written_outside_docs_links_the_plots_its_merged_rows_keep_under_docs(
    tmp_path: Path,
) -> None:
    plot = ROOT / "docs" / "benchmarks" / "staleness.png"
    out = tmp_path / "elsewhere" / "report.md"
    out.parent.mkdir()
    kept = RowResult(title="A merged row", method="Kept from the committed rows.", plots=[plot])

    write(
        out=out,
        machine=HOST,
        command="`python -m bench --only load --merge --out elsewhere/report.md`",
        results=[kept],
        checks=[],
        headline_text="(none)",
        headline_plot=plot,
        failures=[],
        provenance=[],
    )

    links = [line for line in out.read_text().splitlines() if line.startswith("![")]
    assert links, "the report links no plot"
    for line in links:
        target = line[line.index("(") + 1 : line.rindex(")")]
        assert (out.parent / target).resolve() == plot.resolve(), line
