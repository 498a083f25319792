"""The wave loop: push one rollout to its targets wave by wave (waves.py), halting when a wave goes badly.

Without `spec.rollout` there is one wave of every target. With it, after each wave but the last the
runner halts when the wave's failed fraction exceeds failureThreshold, and otherwise bakes for bakeSeconds
while the optional health gate must keep answering 2xx. A cancelled rollout (superseded) stops at once.
A handler that takes a rollout over (after a failover or a retry) re-bakes only the wave whose bake it
may have cut short: the waves followed by one that had already started were baked to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from configrefresh.v1 import refresh_service_pb2 as pb
from refresh_operator import status
from refresh_operator.boundary import HealthGateRefused
from refresh_operator.fanout import RefreshPolicy, Target, TargetOutcome
from refresh_operator.fanout import metrics as fanout_metrics
from refresh_operator.waves import RolloutSpec

Settle = Callable[[list[TargetOutcome]], Awaitable[list[TargetOutcome]]]
"""Turns a wave's outcomes into the ones that count (rollouts.departures: Failed ones that left, Gone)."""


class WaveFanOut(Protocol):
    """What the runner needs of the fan-out: `FanOut.run` (an in-memory one in the unit tests)."""

    async def run(
        self,
        *,
        targets: Sequence[Target],
        request: pb.RefreshRequest,
        policy: RefreshPolicy,
        already_done: Mapping[str, TargetOutcome] | None = None,
        on_outcome: Callable[[TargetOutcome], None] | None = None,
        cancel: asyncio.Event | None = None,
        started_at: float | None = None,
    ) -> list[TargetOutcome]: ...


class HealthProbe(Protocol):
    """What the runner needs of the health-gate policy: a blocking probe (run in a thread)."""

    def probe(self, url: str) -> bool: ...


@dataclasses.dataclass(frozen=True)
class Halt:
    """Why later waves were not started (the Halted condition's reason and message)."""

    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class WavePlan:
    """The waves of one rollout: cumulative target counts `ends`, the route's rollout spec (None: one
    wave, no halting), and the 1-based wave to start from (after a resume)."""

    ends: Sequence[int]
    spec: RolloutSpec | None
    first: int = 1


class WaveRunner:
    def __init__(self, *, fanout: WaveFanOut, health_gates: HealthProbe) -> None:
        self._fanout = fanout
        self._health_gates = health_gates

    async def run(
        self,
        *,
        targets: Sequence[Target],
        plan: WavePlan,
        request: pb.RefreshRequest,
        policy: RefreshPolicy,
        outcomes: dict[str, TargetOutcome],
        on_outcome: Callable[[TargetOutcome], None],
        on_wave: Callable[[int], None],
        cancel: asyncio.Event,
        started_at: float | None = None,
        settle: Settle | None = None,
    ) -> Halt | None:
        """Run the waves from `plan.first`; `outcomes` is updated in place (it also holds what an earlier
        run settled). `started_at` (epoch seconds) keeps the deadline of a resumed handler's first wave.
        `settle` runs on each wave's outcomes before they count (in the failure threshold and in
        config_refresh_instance_refreshes_total, which counts each target called once, as settled);
        an outcome it changes is passed to `on_outcome` again.
        Returns why the rollout halted, or None when every wave ran (or `cancel` was set)."""
        ends = plan.ends
        recorded_before = frozenset(outcomes)  # what an earlier handler settled before a failover or retry
        # the wave's targets called and finished (not skipped, not cancelled), as the fan-out reported them
        finished: dict[str, TargetOutcome] = {}

        def record(outcome: TargetOutcome) -> None:
            finished[outcome.target.instance_id] = outcome
            on_outcome(outcome)

        for index, end in enumerate(ends, start=1):
            if index < plan.first:
                continue
            wave = targets[ends[index - 2] if index > 1 else 0 : end]
            if plan.spec is not None:
                on_wave(index)
            finished.clear()
            try:
                final = await self._fanout.run(
                    targets=wave,
                    request=request,
                    policy=policy,
                    already_done=dict(outcomes),
                    on_outcome=record,
                    cancel=cancel,
                    started_at=started_at if index == plan.first else None,
                )
                if settle is not None and not cancel.is_set():
                    settled = await settle(final)
                    for before, after in zip(final, settled, strict=True):
                        if after != before:
                            on_outcome(after)
                    final = settled
            except BaseException:
                # The wave ended early (the handler cancelled, or a raise kopf retries). A target that
                # acknowledged was called and answered, so it counts now (the next handler skips it once
                # the status holds it); one that failed is called again by the next handler, counted there.
                for outcome in finished.values():
                    if outcome.result.acknowledged:
                        fanout_metrics.count_outcome(outcome.result.value)
                raise
            for outcome in final:
                outcomes[outcome.target.instance_id] = outcome
                if outcome.target.instance_id in finished:
                    # counted once settled: a target that left Cloud Map counts as Gone, never as Failed
                    fanout_metrics.count_outcome(outcome.result.value)
            if cancel.is_set():
                return None
            if plan.spec is None or index == len(ends):
                continue
            wave_failed = status.count(wave, outcomes).failed
            if wave_failed > plan.spec.failure_threshold * len(wave):
                return Halt(
                    "WaveFailed",
                    f"wave {index}/{len(ends)}: {wave_failed}/{len(wave)} instance(s) failed, above the "
                    f"failure threshold {plan.spec.failure_threshold:g}; later waves not started",
                )
            if any(target.instance_id in recorded_before for target in targets[end : ends[index]]):
                continue  # the next wave had started: an earlier handler baked this one to the end
            halt = await self.bake(plan.spec, index=index, of=len(ends), cancel=cancel)
            if halt is not None:
                return halt
        return None

    async def bake(self, waving: RolloutSpec, *, index: int, of: int, cancel: asyncio.Event) -> Halt | None:
        """Wait bakeSeconds after a wave; the health gate (if any) must answer 2xx throughout."""
        loop = asyncio.get_running_loop()
        until = loop.time() + waving.bake_seconds
        while True:
            if waving.health_gate is not None:
                try:
                    ok = await asyncio.to_thread(self._health_gates.probe, waving.health_gate)
                except HealthGateRefused as refused:
                    return Halt("HealthGateNotAllowed", f"{refused}; later waves not started")
                if not ok:
                    return Halt(
                        "HealthGateFailed",
                        f"the health gate failed while wave {index}/{of} baked; later waves not started",
                    )
            left = until - loop.time()
            if left <= 0 or cancel.is_set():
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cancel.wait(), timeout=min(left, 1.0))
