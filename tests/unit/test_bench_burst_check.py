"""The benchmark's burst row is met only for a burst that took at most the seconds its target names."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench.path import BURST_SECONDS, burst_check  # noqa: E402


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
