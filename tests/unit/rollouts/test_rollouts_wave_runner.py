"""The wave loop: waves run in order, a failed wave or a failing health gate halts the later ones."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from prometheus_client import REGISTRY

from configrefresh.v1 import refresh_service_pb2 as pb
from refresh_operator.boundary import HealthGateRefused
from refresh_operator.fanout import RefreshPolicy, Result, Target, TargetOutcome
from refresh_operator.rollouts.wave_runner import Halt, WavePlan, WaveRunner
from refresh_operator.waves import RolloutSpec, plan_waves
from tests.unit.fakes.rollouts import FakeFanOut, targets


class Gate:
    def __init__(self, answers: list[bool] | None = None, *, refuse: bool = False) -> None:
        self.answers = answers or []
        self.refuse = refuse
        self.probes = 0

    def probe(self, url: str) -> bool:
        self.probes += 1
        if self.refuse:
            raise HealthGateRefused(f"{url} is not on the allow-list")
        return self.answers.pop(0) if self.answers else True


def spec(*, threshold: float = 0.0, gate: str | None = None, bake: float = 0.0) -> RolloutSpec:
    return RolloutSpec(
        waves=("1", "50%", "100%"), bake_seconds=bake, failure_threshold=threshold, health_gate=gate
    )


async def run(
    fanout: FakeFanOut, plan: WavePlan, gate: Gate | None = None, count: int = 10
) -> tuple[Halt | None, dict[str, TargetOutcome], list[int]]:
    outcomes: dict[str, TargetOutcome] = {}
    waves: list[int] = []
    halt = await WaveRunner(fanout=fanout, health_gates=gate or Gate()).run(
        targets=targets(count),
        plan=plan,
        request=pb.RefreshRequest(refresh_id="r", version=3),
        policy=RefreshPolicy(),
        outcomes=outcomes,
        on_outcome=lambda _: None,
        on_wave=waves.append,
        cancel=asyncio.Event(),
    )
    return halt, outcomes, waves


async def test_waves_run_in_order_over_disjoint_slices_of_the_targets() -> None:
    fanout = FakeFanOut()
    halt, outcomes, waves = await run(fanout, WavePlan(plan_waves(spec().waves, 10), spec()))
    assert halt is None
    assert [len(call) for call in fanout.calls] == [1, 4, 5]
    assert sorted(i for call in fanout.calls for i in call) == [f"i-{n:02d}" for n in range(10)]
    assert waves == [1, 2, 3]
    assert len(outcomes) == 10


async def test_a_wave_over_the_failure_threshold_halts_the_later_waves() -> None:
    fanout = FakeFanOut(lambda t: Result.FAILED if t.instance_id in ("i-01", "i-02") else Result.APPLIED)
    halt, outcomes, waves = await run(fanout, WavePlan([1, 5, 10], spec(threshold=0.25)))
    assert halt is not None
    assert halt.reason == "WaveFailed"
    assert halt.message.startswith("wave 2/3: 2/4 instance(s) failed, above the failure threshold 0.25")
    assert len(fanout.calls) == 2
    assert waves == [1, 2]
    assert len(outcomes) == 5


async def test_failures_within_the_threshold_go_on_to_the_next_wave() -> None:
    fanout = FakeFanOut(lambda t: Result.FAILED if t.instance_id == "i-01" else Result.APPLIED)
    halt, _, _ = await run(fanout, WavePlan([1, 5, 10], spec(threshold=0.25)))
    assert halt is None
    assert len(fanout.calls) == 3


async def test_the_last_wave_never_halts_however_it_ends() -> None:
    fanout = FakeFanOut(lambda t: Result.FAILED if t.instance_id != "i-00" else Result.APPLIED)
    halt, outcomes, _ = await run(fanout, WavePlan([1, 10], spec()))
    assert halt is None
    assert sum(o.result is Result.FAILED for o in outcomes.values()) == 9


async def test_without_waves_everything_goes_at_once_and_failures_never_halt() -> None:
    fanout = FakeFanOut(lambda _: Result.FAILED)
    halt, _, waves = await run(fanout, WavePlan([10], None))
    assert halt is None
    assert [len(call) for call in fanout.calls] == [10]
    assert waves == []


async def test_a_failing_health_gate_while_baking_halts() -> None:
    gate = Gate([True, False])
    fanout = FakeFanOut()
    halt, _, _ = await run(fanout, WavePlan([1, 5, 10], spec(gate="http://gate.svc/ok", bake=0.0)), gate)
    assert halt == Halt(
        "HealthGateFailed", "the health gate failed while wave 2/3 baked; later waves not started"
    )
    assert len(fanout.calls) == 2


async def test_a_health_gate_off_the_allow_list_halts_after_the_first_wave() -> None:
    fanout = FakeFanOut()
    halt, _, _ = await run(
        fanout, WavePlan([1, 5, 10], spec(gate="http://169.254.169.254/")), Gate(refuse=True)
    )
    assert halt is not None
    assert halt.reason == "HealthGateNotAllowed"
    assert len(fanout.calls) == 1


async def test_a_resumed_plan_starts_at_its_first_wave() -> None:
    fanout = FakeFanOut()
    halt, _, waves = await run(fanout, WavePlan([1, 5, 10], spec(), first=2))
    assert halt is None
    assert fanout.calls == [[f"i-{n:02d}" for n in range(1, 5)], [f"i-{n:02d}" for n in range(5, 10)]]
    assert waves == [2, 3]


async def test_a_cancelled_rollout_stops_after_the_wave_in_flight() -> None:
    fanout = FakeFanOut()
    cancel = asyncio.Event()

    def cancel_on_first(_: TargetOutcome) -> None:
        cancel.set()

    halt = await WaveRunner(fanout=fanout, health_gates=Gate()).run(
        targets=targets(10),
        plan=WavePlan([1, 5, 10], spec(threshold=1.0)),
        request=pb.RefreshRequest(refresh_id="r", version=3),
        policy=RefreshPolicy(),
        outcomes={},
        on_outcome=cancel_on_first,
        on_wave=lambda _: None,
        cancel=cancel,
    )
    assert halt is None
    assert len(fanout.calls) == 1


async def test_settle_turns_outcomes_before_they_count_and_reports_the_changed_ones() -> None:
    fanout = FakeFanOut(lambda t: Result.FAILED if t.instance_id == "i-00" else Result.APPLIED)
    seen: list[TargetOutcome] = []
    settled_waves: list[list[str]] = []

    async def settle(final: list[TargetOutcome]) -> list[TargetOutcome]:
        settled_waves.append([o.target.instance_id for o in final])
        return [dataclasses.replace(o, result=Result.GONE) if o.result is Result.FAILED else o for o in final]

    outcomes: dict[str, TargetOutcome] = {}
    halt = await WaveRunner(fanout=fanout, health_gates=Gate()).run(
        targets=targets(4),
        plan=WavePlan([1, 4], spec(threshold=0.0)),
        request=pb.RefreshRequest(refresh_id="r", version=3),
        policy=RefreshPolicy(),
        outcomes=outcomes,
        on_outcome=seen.append,
        on_wave=lambda _: None,
        cancel=asyncio.Event(),
        settle=settle,
    )
    assert halt is None  # the Gone one in wave 1 is not a failure: wave 2 ran
    assert settled_waves == [["i-00"], ["i-01", "i-02", "i-03"]]
    assert outcomes["i-00"].result is Result.GONE
    assert [(o.target.instance_id, o.result) for o in seen][:2] == [
        ("i-00", Result.FAILED),
        ("i-00", Result.GONE),
    ]


def counted(result: str) -> float:
    sample = REGISTRY.get_sample_value("config_refresh_instance_refreshes_total", {"result": result})
    return sample or 0.0


async def test_each_target_called_is_counted_once_by_its_settled_result_so_gone_is_never_failed() -> None:
    results = {"i-00": Result.APPLIED, "i-01": Result.FAILED, "i-02": Result.FAILED, "i-03": Result.STALE}
    fanout = FakeFanOut(lambda t: results[t.instance_id])

    async def settle(final: list[TargetOutcome]) -> list[TargetOutcome]:  # i-01 left Cloud Map
        return [
            dataclasses.replace(o, result=Result.GONE) if o.target.instance_id == "i-01" else o for o in final
        ]

    before = {result: counted(result.value) for result in Result}
    done_earlier = TargetOutcome(targets(5)[4], Result.APPLIED, 1, 1, None, 1.0)
    await WaveRunner(fanout=fanout, health_gates=Gate()).run(
        targets=targets(5),
        plan=WavePlan([5], None),
        request=pb.RefreshRequest(refresh_id="r", version=3),
        policy=RefreshPolicy(),
        outcomes={"i-04": done_earlier},  # acknowledged by an earlier handler: not called, not counted
        on_outcome=lambda _: None,
        on_wave=lambda _: None,
        cancel=asyncio.Event(),
        settle=settle,
    )
    grown = {result.value: counted(result.value) - before[result] for result in Result}
    assert grown == {"Applied": 1, "Stale": 1, "Rejected": 0, "Failed": 1, "Gone": 1}


def settled(count: int) -> dict[str, TargetOutcome]:
    """What an earlier handler recorded for the first `count` targets before it stopped."""
    return {t.instance_id: TargetOutcome(t, Result.APPLIED, 3, 1, None, 1.0) for t in targets(10)[:count]}


async def taken_over(recorded: dict[str, TargetOutcome], gate: Gate) -> Halt | None:
    return await WaveRunner(fanout=FakeFanOut(), health_gates=gate).run(
        targets=targets(10),
        plan=WavePlan([1, 5, 10], spec(gate="http://gate.svc/ok", bake=0.0)),
        request=pb.RefreshRequest(refresh_id="r", version=3),
        policy=RefreshPolicy(),
        outcomes=recorded,
        on_outcome=lambda _: None,
        on_wave=lambda _: None,
        cancel=asyncio.Event(),
    )


async def test_a_taken_over_rollout_does_not_bake_again_the_waves_already_followed_by_another() -> None:
    # the operator stopped in wave 3 (one of its targets recorded): waves 1 and 2 were baked to the end
    gate = Gate()
    assert await taken_over(settled(6), gate) is None
    assert gate.probes == 0


async def test_a_taken_over_rollout_bakes_again_the_wave_whose_bake_it_may_have_cut_short() -> None:
    # the operator stopped after wave 2's targets but before wave 3 started: wave 2's bake is redone,
    # and a health gate failing now halts the rollout as it would have then
    gate = Gate([False])
    halt = await taken_over(settled(5), gate)
    assert halt == Halt(
        "HealthGateFailed", "the health gate failed while wave 2/3 baked; later waves not started"
    )
    assert gate.probes == 1


async def test_a_wave_that_raises_midway_still_counts_the_targets_that_acknowledged() -> None:
    # The acknowledged ones are never called again by the handler that retries; the failed one is, and
    # is counted there, so it is not counted here.
    answers = {"i-00": Result.APPLIED, "i-01": Result.FAILED, "i-02": Result.STALE}

    def answer(target: Target) -> Result:
        if target.instance_id == "i-03":
            raise RuntimeError("the fan-out broke down midway")
        return answers[target.instance_id]

    before = {result: counted(result.value) for result in Result}
    recorded: list[str] = []
    with pytest.raises(RuntimeError, match="broke down midway"):
        await WaveRunner(fanout=FakeFanOut(answer), health_gates=Gate()).run(
            targets=targets(5),
            plan=WavePlan([5], None),
            request=pb.RefreshRequest(refresh_id="r", version=3),
            policy=RefreshPolicy(),
            outcomes={},
            on_outcome=lambda outcome: recorded.append(outcome.target.instance_id),
            on_wave=lambda _: None,
            cancel=asyncio.Event(),
        )
    assert recorded == ["i-00", "i-01", "i-02"]
    grown = {result.value: counted(result.value) - before[result] for result in Result}
    assert grown == {"Applied": 1, "Stale": 1, "Rejected": 0, "Failed": 0, "Gone": 0}


async def test_a_settle_that_raises_still_counts_the_targets_that_acknowledged() -> None:
    fanout = FakeFanOut(lambda t: Result.FAILED if t.instance_id == "i-01" else Result.APPLIED)

    async def settle(final: list[TargetOutcome]) -> list[TargetOutcome]:
        raise RuntimeError("Cloud Map answered garbage")

    before = counted("Applied")
    with pytest.raises(RuntimeError, match="garbage"):
        await WaveRunner(fanout=fanout, health_gates=Gate()).run(
            targets=targets(3),
            plan=WavePlan([3], None),
            request=pb.RefreshRequest(refresh_id="r", version=3),
            policy=RefreshPolicy(),
            outcomes={},
            on_outcome=lambda _: None,
            on_wave=lambda _: None,
            cancel=asyncio.Event(),
            settle=settle,
        )
    assert counted("Applied") - before == 2
