"""Status summaries: exact counts, a capped instance list with failures first, and the phase rules."""

from __future__ import annotations

import pytest

from refresh_operator.fanout import Result, Target, TargetOutcome
from refresh_operator.status import (
    FAILED,
    PARTIALLY_FAILED,
    SUCCEEDED,
    count,
    failed_ids,
    final_phase,
    instance_entries,
    merge_conditions,
    outcomes_from_status,
)


def targets(n: int) -> list[Target]:
    return [
        Target(instance_id=f"i-{i:04d}", address=f"127.0.0.{10 + i % 200}:50051", attributes={})
        for i in range(n)
    ]


def outcome(target: Target, result: Result) -> TargetOutcome:
    ok = result is not Result.FAILED
    return TargetOutcome(
        target=target,
        result=result,
        version=5 if ok else 0,
        attempts=1 if ok else 3,
        error=None if ok else "UNAVAILABLE: connection refused",
        acknowledged_at=1.0 if ok else None,
    )


def test_counts_are_exact_and_the_list_is_capped_failures_first() -> None:
    fleet = targets(500)
    results = {t.instance_id: outcome(t, Result.APPLIED) for t in fleet[:450]}
    results.update({t.instance_id: outcome(t, Result.FAILED) for t in fleet[450:480]})
    results.update({t.instance_id: outcome(t, Result.STALE) for t in fleet[480:490]})
    counts = count(fleet, results)
    assert (counts.targets, counts.refreshed, counts.failed, counts.stale, counts.pending) == (
        500,
        460,
        30,
        10,
        10,
    )
    assert counts.progress == "460/500"
    entries, truncated = instance_entries(fleet, results, cap=200)
    assert truncated
    assert len(entries) == 200
    assert [e["result"] for e in entries[:30]] == ["Failed"] * 30
    assert [e["result"] for e in entries[30:40]] == ["Pending"] * 10
    assert entries[0]["error"].startswith("UNAVAILABLE")
    assert "error" not in entries[-1]


def test_a_small_fleet_is_listed_whole() -> None:
    fleet = targets(3)
    entries, truncated = instance_entries(
        fleet, {fleet[0].instance_id: outcome(fleet[0], Result.APPLIED)}, cap=200
    )
    assert not truncated
    assert {e["id"] for e in entries} == {"i-0000", "i-0001", "i-0002"}


@pytest.mark.parametrize(
    ("results", "phase"),
    [
        ([Result.APPLIED] * 10, SUCCEEDED),
        ([Result.APPLIED] * 8 + [Result.STALE] * 2, SUCCEEDED),
        ([Result.APPLIED] * 8 + [Result.FAILED] * 2, PARTIALLY_FAILED),
        ([Result.APPLIED] * 9 + [Result.REJECTED], PARTIALLY_FAILED),
        ([Result.FAILED] * 10, FAILED),
        ([], SUCCEEDED),
    ],
)
def test_the_final_phase_follows_the_results(results: list[Result], phase: str) -> None:
    fleet = targets(len(results))
    outcomes = {t.instance_id: outcome(t, r) for t, r in zip(fleet, results, strict=True)}
    assert final_phase(count(fleet, outcomes)) == phase


def test_failed_ids_name_exactly_the_failed_instances() -> None:
    fleet = targets(5)
    outcomes = {t.instance_id: outcome(t, Result.APPLIED) for t in fleet}
    outcomes["i-0003"] = outcome(fleet[3], Result.FAILED)
    outcomes["i-0001"] = outcome(fleet[1], Result.FAILED)
    assert failed_ids(fleet, outcomes) == ["i-0001", "i-0003"]


def test_a_resumed_rollout_skips_what_status_recorded_as_acknowledged() -> None:
    fleet = targets(4)
    status = {
        "instances": [
            {"id": "i-0000", "result": "Applied", "version": 5, "attempts": 1},
            {"id": "i-0001", "result": "Failed", "version": 0, "attempts": 3, "error": "UNAVAILABLE"},
            {"id": "i-0002", "result": "Pending", "version": 0, "attempts": 0},
            {"id": "gone", "result": "Applied", "version": 5, "attempts": 1},
        ]
    }
    done = outcomes_from_status(status, fleet)
    assert set(done) == {"i-0000"}
    assert done["i-0000"].result is Result.APPLIED


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    old = [{"type": "Ready", "status": "False", "reason": "A", "message": "", "lastTransitionTime": "T1"}]
    same = merge_conditions(
        old, [{"type": "Ready", "status": "False", "reason": "B", "message": "", "lastTransitionTime": "T2"}]
    )
    flipped = merge_conditions(
        old, [{"type": "Ready", "status": "True", "reason": "C", "message": "", "lastTransitionTime": "T3"}]
    )
    assert same[0]["lastTransitionTime"] == "T1"
    assert same[0]["reason"] == "B"
    assert flipped[0]["lastTransitionTime"] == "T3"
