"""Wave planning of progressive rollouts: cumulative sizes, percentages rounded up, always ending at all."""

from __future__ import annotations

import pytest

from refresh_operator.waves import RolloutSpec, plan_waves, rollout_from_spec


@pytest.mark.parametrize(
    ("waves", "total", "ends"),
    [
        (["1", "10%", "50%", "100%"], 100, [1, 10, 50, 100]),
        (["1", "10%", "50%", "100%"], 4, [1, 2, 4]),
        (["1", "50%"], 10, [1, 5, 10]),
        (["5"], 3, [3]),
        (["100%"], 7, [7]),
        (["1", "10%"], 1, [1]),
    ],
)
def test_waves_are_cumulative_increasing_and_end_with_every_target(
    waves: list[str], total: int, ends: list[int]
) -> None:
    assert plan_waves(waves, total) == ends


def test_no_targets_make_no_waves() -> None:
    assert plan_waves(["1", "100%"], 0) == []


def test_a_route_without_rollout_rolls_out_at_once() -> None:
    assert rollout_from_spec({}) is None


def test_rollout_defaults() -> None:
    assert rollout_from_spec({"rollout": {"waves": ["1", "100%"]}}) == RolloutSpec(
        waves=("1", "100%"), bake_seconds=60, failure_threshold=0, health_gate=None
    )
