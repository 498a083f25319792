"""The benchmark harness at tiny sizes, its counters checked against known truth (issue 9).

`make bench` reports timings; these tests run the same code paths (bench.path, bench.scale,
bench.polling) on 3 to 20 instances and check what is exactly knowable: one Parameter Store read per
change at 3 and at 6 instances (counted at the local AWS endpoint), zero calls in an idle window, every
instance acknowledged, the final value everywhere after a burst, no version served after a newer one,
and a polling fleet that had to read each write at least once per instance. Timing values are printed
by the harness, never asserted here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.controlplane.plane import ControlPlane
from devstack.stack.builder import Stack
from devstack.stack.operator import operator_executable

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import operator_memory, path, polling, scale, scale_profile  # noqa: E402


@pytest.fixture(params=[3, 6], ids=lambda n: f"{n}-instances")
def whole_stack(request: pytest.FixtureRequest, control_plane: ControlPlane) -> Iterator[Stack]:
    # control_plane: the binaries exist; the stack runs its own apiserver, as make bench does.
    stack = Stack.start(instances=request.param, namespace="bench-test")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.timeout(400)
def test_whole_path_reads_parameter_store_once_per_change_and_never_while_idle(
    whole_stack: Stack,
) -> None:
    rollouts = path.Rollouts(whole_stack)
    try:
        measured = path.whole_path(whole_stack, rollouts, changes=4)
        assert measured["phases"] == {"Succeeded": 4}
        assert measured["reads"] == 4
        # the GetConfig probe reads nothing from Parameter Store: every GetParameter is the operator's
        assert measured["counts"]["ssm:GetParameter"] == 4
        assert measured["counts"]["ssm:PutParameter"] == 4
        assert len(measured["last_ms"]) == 4  # the probe saw every change on every instance
        assert measured["staleness"].samples == 4 * len(whole_stack.fleet)
        # the probe-free pass timed every change from the rollout's own latencyMs (a missing one raises)
        acked = measured["acked"]
        assert len(acked.ms) == 4
        # and what each change cost the instances and the operator in CPU, the floor the row reports
        assert len(acked.floor_ms()) == 4
        assert all(cpu > 0 for cpu in acked.instances_cpu + acked.operator_cpu), acked
        # each rollout's stages, from its status and the operator's fan-out log line
        stages = scale_profile.stages(measured["finals"], whole_stack.operator.log_text())
        assert len(stages) == 4
        # in order; latencyMs (last_ack) is whole milliseconds, rounded, the others are not: 0.5 ms of slack
        for s in stages:
            assert s.first_call is not None, stages
            assert 0 < s.discovered < s.last_ack + 0.5, stages
            assert s.last_ack <= s.completed + 0.5, stages

        quiet = path.idle_cost(whole_stack, seconds=5.0, speedup=1, parameters=1)
        assert quiet["push_reads"] == 0
        assert {k: v for k, v in quiet["by_action"].items() if v} == {}

        burst = path.burst(whole_stack, rollouts, writes=20)
        assert burst["last_version"] == 20
        assert burst["everywhere"], "the last write is not served by every instance"
        assert burst["regressions"] == []
        assert burst["samples"] > 0
        assert 1 <= burst["rollouts"] <= 20

        # the instance side of the floor: the pass's CPU by thread, then one instance called directly
        tables, notes = path.instance_costs(
            whole_stack, acked, size=len(whole_stack.fleet), changes=4, calls=40
        )
        costs = tables[0][1]
        assert len(costs) == 3
        for row in costs:
            total, *by_role = (float(cell.removesuffix(" ms")) for cell in row[2:])
            assert total > 0, row
            assert abs(sum(by_role) - total) <= 0.02, row  # each figure is rounded to 0.01 ms
            assert by_role[0] > 0, row  # the main thread runs every handler
        # every direct call was applied: 5 warm-up calls before each of the two passes, 40 back to
        # back, 20 gapped, 20 more under py-spy
        name = f"{whole_stack.local_aws.prefix}bench/path/instance-cost"
        assert whole_stack.fleet[0].get_config(name).version == 5 + 40 + 5 + 20 + 20
        # the machine's part of the wake-up: the Refresh beside a plain burst in a process of its own
        wake = next(rows for header, rows in tables if header[0] == "what ran, nothing else running")
        assert [row[0].split(" ")[0] for row in wake] == ["Refresh", "a"]
        for row in wake:
            warm, after = (float(cell.removesuffix(" ms")) for cell in row[1:3])
            assert warm > 0, row
            assert after > 0, row
            assert float(row[3].removeprefix("x")) > 0, row
        profiled = any(header[0].startswith("where one instance's GIL time goes") for header, _ in tables)
        assert profiled or any(note.startswith("No profile") for note in notes)
    finally:
        rollouts.close()
    for item in rollouts_for(whole_stack, "/config-service/bench/path/flag"):
        assert item["status"]["refreshed"] == len(whole_stack.fleet)


def rollouts_for(stack: Stack, name: str) -> list[dict[str, Any]]:
    return [item for item in stack.refreshes() if item["spec"]["parameter"]["name"] == name]


@pytest.mark.timeout(400)
def test_push_at_scale_counts_one_read_per_change_and_every_endpoint_acknowledged(
    control_plane: ControlPlane,
) -> None:
    result, extra = scale.push_at_scale(instances=20, changes=3)  # at two concurrencies: 6 changes
    assert extra["reads_per_change"] == 1.0
    assert extra["counts"]["ssm:GetParameter"] == 6
    assert extra["refreshed"] == [20] * 6  # over TLS with the bearer token the endpoints check
    assert result.checks  # the 1,000-instance target is reported (met or not), never asserted
    tables = {header[0]: rows for header, rows in result.tables}
    assert {row[-1] for row in tables["stage, 20 instances"]} == {"6"}  # every stage of every change
    profiled = any(title.startswith("where the operator's GIL time goes") for title in tables)
    assert profiled or any(note.startswith("No profile") for note in result.notes)
    # where the stage before "targets discovered" waited, from the operator's own log
    assert any(note.startswith("Coalescing in this run") for note in result.notes)


@pytest.mark.timeout(300)
def test_polling_fleet_reads_each_write_at_least_once_per_instance(tmp_path: Path) -> None:
    outcome = polling.measure(ttl=1.0, instances=2, writes=2, workdir=tmp_path)
    assert outcome["staleness"].samples == 2 * 2  # every write seen served by every instance
    # An instance re-reads its keys in one GetParameters call per TTL, so two writes in one TTL can share
    # a call: at least one read per instance, since no instance can serve a write it never read.
    assert outcome["reads"] >= 2


@pytest.mark.timeout(400)
def test_idle_memory_settles_for_both_podsync_settings(control_plane: ControlPlane, tmp_path: Path) -> None:
    # control_plane: the binaries exist; the row runs its own apiserver, as make bench does.
    build = operator_executable()
    samples = operator_memory.measure(runs=1, builds={"this tree": build}, log_dir=tmp_path)
    assert sorted(samples) == [("this tree", False), ("this tree", True)]
    for (_, _), found in samples.items():
        (sample,) = found
        assert (
            10 * 1024 < sample.rss_kib <= sample.hwm_kib
        )  # a live Python operator, its peak at least as high
        assert sample.settle_seconds < operator_memory.SETTLE_LIMIT_SECONDS + 5
    assert (tmp_path / "operator-0.log").read_text().count("ConfigRoute(s)") == 2  # two started operators


def test_bench_command_line_refuses_an_unknown_row() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nonsense"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "unknown rows: nonsense" in done.stderr
