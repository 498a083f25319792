"""The committed benchmark rows (docs/benchmarks/rows.json): what `--merge` reports beside a row run now."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import rows_file
from bench.__main__ import ROWS
from bench.common import ROOT, Check, Machine, Row, RowResult
from bench.staleness import Summary


def a_row(date: str = "2026-12-06 19:59 UTC", note: str = "") -> Row:
    return Row(
        results=[
            RowResult(
                title="Whole path",
                method="how it was measured",
                checks=[Check("p99", "≤ 200 ms", "489 ms", False), Check("reads", "1", "1.00", True)],
                tables=[(["instances", "p50"], [["100", "302 ms"]])],
                plots=[ROOT / "docs" / "benchmarks" / "whole_path.png"],
                notes=[note],
            )
        ],
        push={
            "reads_per_change": {10: 1.0, 100: 1.0},
            "staleness": Summary(5000, 0.497, 0.9, 1.136, 1.3, 0.4, 1.0, 0.425),
            "idle_cost": {"per_minute": 35.3, "by_action": {"ssm:GetParameters": 1050}},
        },
        polls=[{"ttl": 45.0, "reads": 46, "missing": None}],
        when=f"{date}, python -m bench at 8f86952",
        machine=Machine(2, 23.5, "3.11.7", "Linux", "8f86952", date, "2.55, 2.60, 1.83"),
    )


def test_rows_come_back_from_the_file_as_they_went_in(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    rows = {"path": a_row(), "fanout": a_row(note="second")}
    rows_file.dump(rows, path)
    assert rows_file.load(path) == rows
    document = json.loads(path.read_text())
    assert document["rows"]["path"]["results"][0]["plots"] == [{"__path__": "docs/benchmarks/whole_path.png"}]


def test_a_value_of_a_type_the_file_does_not_know_is_refused_when_written(tmp_path: Path) -> None:
    row = a_row()
    row.push["when"] = object()
    with pytest.raises(TypeError, match="cannot go into the rows file"):
        rows_file.dump({"path": row}, tmp_path / "rows.json")


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"format": 99, "rows": {}}),
        json.dumps({"format": 1, "rows": {"path": {"__type__": "Nonsense"}}}),
        json.dumps({"format": 1, "rows": {"path": {"__type__": "Check", "what": "no other fields"}}}),
        json.dumps({"format": 1, "rows": {"path": [1, 2]}}),
    ],
)
def test_a_file_that_is_not_rows_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rows.json"
    path.write_text(text)
    with pytest.raises(rows_file.RowsFileError, match=re.escape(str(path))):
        rows_file.load(path)


def test_no_file_is_no_rows(tmp_path: Path) -> None:
    assert rows_file.load(tmp_path / "absent.json") == {}


def test_the_newest_run_of_each_row_is_merged_whichever_source_holds_it() -> None:
    committed = {"path": a_row("2026-12-06 19:59 UTC"), "fanout": a_row("2026-12-06 19:59 UTC")}
    cached = {"path": a_row("2026-12-05 08:00 UTC", note="older"), "fanout": a_row("2026-12-07 08:00 UTC")}
    merged = rows_file.newest(committed, cached)
    assert merged["path"] is committed["path"]
    assert merged["fanout"] is cached["fanout"]


def test_the_committed_file_holds_every_row_of_the_committed_report() -> None:
    """docs/benchmarks.md is written from these rows: each row it names as measured is in the file, from
    the run the report names."""
    rows = rows_file.load()
    report = (ROOT / "docs" / "benchmarks.md").read_text()
    (named,) = re.findall(r"^Rows and the run that measured them: (.*)$", report, flags=re.MULTILINE)
    runs = dict(entry.split(": ", 1) for entry in named.rstrip(".").split("; "))
    assert set(runs) <= set(ROWS)
    assert set(rows) == set(runs)
    for name, row in rows.items():
        assert row.machine is not None
        assert runs[name] == f"{row.when} at {row.machine.commit}"
        assert all(plot.is_file() for result in row.results for plot in result.plots)
