"""The machine's part of an instance's wake-up cost (bench/wake_probe.py): the child process's answer,
and the table rows made from it. No timing is asserted: the benchmark reports the figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import wake_probe  # noqa: E402
from bench.wake_probe import WakeCost  # noqa: E402


def test_measure_runs_the_probe_in_a_child_and_returns_each_gap_in_order() -> None:
    costs = wake_probe.measure([0.01, 0.0], calls=3, objects=2_000)

    assert [cost.gap for cost in costs] == [0.0, 0.01]
    assert all(cost.ms > 0 for cost in costs)


def test_the_burst_reads_the_picked_records_and_is_the_same_for_the_same_picks() -> None:
    records = wake_probe.working_set(50)

    assert wake_probe.burst(records, [1, 2, 3]) == wake_probe.burst(records, [1, 2, 3])
    assert wake_probe.burst(records, [1, 2, 3]) != wake_probe.burst(records, [40, 41, 42])


def test_parse_takes_the_last_json_line_and_refuses_anything_else() -> None:
    assert wake_probe.parse('warming\n{"0.05": 3.5, "0": 1.0}\n') == [WakeCost(0.0, 1.0), WakeCost(0.05, 3.5)]
    with pytest.raises(RuntimeError, match="printed no result"):
        wake_probe.parse("Traceback (most recent call last): ...")
    with pytest.raises(RuntimeError, match="printed no result"):
        wake_probe.parse("")


def test_a_failing_child_is_an_error_with_its_stderr() -> None:
    with pytest.raises(RuntimeError, match="wake_probe failed"):
        wake_probe.measure([0.0], calls=-1, objects=0)  # no records to pick from: the child raises


def test_warm_and_after_needs_both_gaps_measured() -> None:
    costs = [WakeCost(0.0, 0.5), WakeCost(0.05, 2.0)]

    assert wake_probe.warm_and_after(costs, 0.05) == (0.5, 2.0)
    with pytest.raises(RuntimeError, match=r"not 0 and 0\.2"):
        wake_probe.warm_and_after(costs, 0.2)


def test_a_row_states_both_costs_and_their_ratio() -> None:
    assert wake_probe.row("x", 0.5, 2.0) == ["x", "0.50 ms", "2.00 ms", "x4.0"]
    assert wake_probe.header(0.05)[2] == "after 50 ms idle"
