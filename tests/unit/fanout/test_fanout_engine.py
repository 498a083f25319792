"""The fan-out engine against in-process grpc.aio RefreshService servers that answer as scripted.

Integration tests (tests/integration/test_fanout_*.py) prove the same against real config_service
processes; these pin the rules that are hard to provoke there: which codes are retried, what already
acknowledged targets cost, what cancel does, what travels as metadata.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from refresh_operator.fanout import (
    CANCELLED_ERROR,
    BreakerRegistry,
    BreakerState,
    ChannelPool,
    FanOut,
    RefreshPolicy,
    Result,
    Target,
    TargetOutcome,
    is_retryable,
)
from refresh_operator.fanout.launcher import Launcher
from refresh_operator.fanout.tokens import TokenCache

Step = Callable[[pb.RefreshRequest, Any], Awaitable[pb.RefreshResponse]]


def answer(
    result: pb.RefreshResult.ValueType = pb.REFRESH_RESULT_APPLIED,
    version: int | None = None,
    message: str = "",
) -> Step:
    async def step(request: pb.RefreshRequest, context: Any) -> pb.RefreshResponse:
        return pb.RefreshResponse(
            result=result,
            applied_version=request.version if version is None else version,
            message=message,
        )

    return step


def abort(code: grpc.StatusCode, details: str = "scripted") -> Step:
    async def step(request: pb.RefreshRequest, context: Any) -> pb.RefreshResponse:
        await context.abort(code, details)
        raise AssertionError("unreachable")

    return step


def hang() -> Step:
    async def step(request: pb.RefreshRequest, context: Any) -> pb.RefreshResponse:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    return step


@dataclass
class Scripted(pb_grpc.RefreshServiceServicer):
    """Answers each call with the next scripted step; the last step repeats."""

    instance_id: str
    steps: list[Step] = field(default_factory=lambda: [answer()])
    calls: int = 0
    metadata: list[dict[str, str]] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)

    async def Refresh(self, request: pb.RefreshRequest, context: Any) -> pb.RefreshResponse:
        self.calls += 1
        self.called.set()
        self.metadata.append({key: value for key, value in context.invocation_metadata()})
        step = self.steps[min(self.calls - 1, len(self.steps) - 1)]
        response = await step(request, context)
        response.instance_id = self.instance_id
        return response

    async def GetState(self, request: pb.GetStateRequest, context: Any) -> pb.GetStateResponse:
        return pb.GetStateResponse(instance_id=self.instance_id)


@dataclass
class Fleet:
    servicers: dict[str, Scripted]
    targets: list[Target]


@pytest.fixture
async def fleet_factory() -> AsyncIterator[Callable[..., Awaitable[Fleet]]]:
    servers: list[Any] = []

    async def start(*scripts: list[Step]) -> Fleet:
        servicers: dict[str, Scripted] = {}
        targets: list[Target] = []
        for index, steps in enumerate(scripts):
            instance_id = f"i-{index:03d}"
            servicer = Scripted(instance_id=instance_id, steps=list(steps))
            server = grpc.aio.server()
            pb_grpc.add_RefreshServiceServicer_to_server(servicer, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            servers.append(server)
            servicers[instance_id] = servicer
            targets.append(Target(instance_id=instance_id, address=f"127.0.0.1:{port}", attributes={}))
        return Fleet(servicers=servicers, targets=targets)

    yield start
    await asyncio.gather(*(server.stop(grace=None) for server in servers))


@pytest.fixture
async def fanout() -> AsyncIterator[FanOut]:
    channels = ChannelPool()
    yield FanOut(channels=channels, breakers=BreakerRegistry(failure_threshold=50))
    await channels.aclose()


REQUEST = pb.RefreshRequest(
    refresh_id="orders-abc-v7",
    parameter_name="/config-service/acme/orders/db_url",
    version=7,
    operation=pb.OPERATION_UPSERT,
    payload_mode=pb.PAYLOAD_MODE_VALUE,
    value="postgres://db",
)
FAST = RefreshPolicy(timeout_seconds=1.0, max_attempts=3, deadline_seconds=10.0, backoff_base_seconds=0.01)


def by_id(outcomes: list[TargetOutcome]) -> dict[str, TargetOutcome]:
    return {outcome.target.instance_id: outcome for outcome in outcomes}


async def test_every_target_applies_and_reports_the_version(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory(*[[answer()] for _ in range(5)])
    before = time.time()
    outcomes = await fanout.run(targets=fleet.targets, request=REQUEST, policy=FAST)
    assert [o.target for o in outcomes] == fleet.targets
    assert {o.result for o in outcomes} == {Result.APPLIED}
    assert {(o.version, o.attempts, o.error) for o in outcomes} == {(7, 1, None)}
    assert all(o.acknowledged_at is not None and o.acknowledged_at >= before for o in outcomes)


async def test_stale_and_rejected_answers_are_reported_as_such(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory(
        [answer(pb.REFRESH_RESULT_STALE, version=9)],
        [answer(pb.REFRESH_RESULT_REJECTED, version=3, message="re-read found version 3")],
    )
    outcomes = by_id(await fanout.run(targets=fleet.targets, request=REQUEST, policy=FAST))
    assert (outcomes["i-000"].result, outcomes["i-000"].version) == (Result.STALE, 9)
    assert (outcomes["i-001"].result, outcomes["i-001"].version) == (Result.REJECTED, 3)
    assert outcomes["i-001"].error == "re-read found version 3"
    assert fleet.servicers["i-001"].calls == 1  # an answer is final, never retried


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED],
)
async def test_retryable_codes_are_retried_until_the_instance_answers(
    code: grpc.StatusCode, fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([abort(code), abort(code), answer()])
    [outcome] = await fanout.run(targets=fleet.targets, request=REQUEST, policy=FAST)
    assert (outcome.result, outcome.attempts, outcome.error) == (Result.APPLIED, 3, None)
    assert fleet.servicers["i-000"].calls == 3


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED],
)
async def test_final_codes_fail_at_once_and_the_error_names_the_code(
    code: grpc.StatusCode, fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([abort(code, "parameter_name is outside the prefixes"), answer()])
    [outcome] = await fanout.run(targets=fleet.targets, request=REQUEST, policy=FAST)
    assert outcome.result is Result.FAILED
    assert outcome.attempts == 1
    assert outcome.error is not None
    assert outcome.error.startswith(f"{code.name}: parameter_name is outside the prefixes")
    assert fleet.servicers["i-000"].calls == 1


def test_retry_classification_table() -> None:
    retryable = {code for code in grpc.StatusCode if is_retryable(code)}
    assert retryable == {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }


async def test_a_target_fails_after_max_attempts_with_the_last_code(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([abort(grpc.StatusCode.UNAVAILABLE, "bootstrapping")], [answer()])
    outcomes = by_id(await fanout.run(targets=fleet.targets, request=REQUEST, policy=FAST))
    failed = outcomes["i-000"]
    assert (failed.result, failed.attempts, failed.version, failed.acknowledged_at) == (
        Result.FAILED,
        3,
        0,
        None,
    )
    assert failed.error == "UNAVAILABLE: bootstrapping (attempt 3/3)"
    assert outcomes["i-001"].result is Result.APPLIED


async def test_a_hanging_instance_fails_on_its_own_deadline_without_delaying_the_others(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([hang()], *[[answer()] for _ in range(4)])
    finished_at: dict[str, float] = {}
    start = time.monotonic()

    def note(outcome: TargetOutcome) -> None:
        finished_at[outcome.target.instance_id] = time.monotonic() - start

    policy = RefreshPolicy(
        timeout_seconds=1.5, max_attempts=2, deadline_seconds=8.0, backoff_base_seconds=0.01
    )
    outcomes = by_id(
        await fanout.run(
            targets=fleet.targets,
            request=REQUEST,
            policy=policy,
            on_outcome=note,
        )
    )
    assert outcomes["i-000"].result is Result.FAILED
    assert outcomes["i-000"].attempts == 2
    assert outcomes["i-000"].error is not None
    assert "DEADLINE_EXCEEDED" in outcomes["i-000"].error
    # The others were reported before the hanging one's first call timed out.
    assert max(finished_at[f"i-00{n}"] for n in range(1, 5)) < finished_at["i-000"]
    assert finished_at["i-000"] < policy.deadline_seconds


async def test_the_rollout_deadline_cuts_retries_short(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([hang()])
    policy = RefreshPolicy(
        timeout_seconds=0.4, max_attempts=100, deadline_seconds=1.0, backoff_base_seconds=0.01
    )
    [outcome] = await fanout.run(targets=fleet.targets, request=REQUEST, policy=policy)
    assert outcome.result is Result.FAILED
    assert 2 <= outcome.attempts <= 4
    assert outcome.error is not None
    assert "deadline" in outcome.error


async def test_acknowledged_targets_of_an_earlier_run_are_not_called_again(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([answer()], [answer()], [answer()])
    first, second, third = fleet.targets
    earlier = {
        first.instance_id: TargetOutcome(first, Result.APPLIED, 7, 1, None, 1.0),
        second.instance_id: TargetOutcome(second, Result.FAILED, 0, 3, "UNAVAILABLE: x", None),
    }
    reported: list[str] = []
    outcomes = await fanout.run(
        targets=fleet.targets,
        request=REQUEST,
        policy=FAST,
        already_done=earlier,
        on_outcome=lambda o: reported.append(o.target.instance_id),
    )
    assert outcomes[0] == earlier[first.instance_id]
    assert [o.result for o in outcomes] == [Result.APPLIED] * 3
    assert fleet.servicers[first.instance_id].calls == 0
    assert fleet.servicers[second.instance_id].calls == 1  # a failed one is tried again
    assert sorted(reported) == [second.instance_id, third.instance_id]


async def test_cancel_stops_outstanding_calls_promptly(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([answer()], [hang()], [hang()])
    cancel = asyncio.Event()
    first_done = asyncio.Event()
    policy = RefreshPolicy(timeout_seconds=30.0, deadline_seconds=60.0)
    run = asyncio.create_task(
        fanout.run(
            targets=fleet.targets,
            request=REQUEST,
            policy=policy,
            cancel=cancel,
            on_outcome=lambda outcome: first_done.set(),
        )
    )
    waiting = [
        first_done.wait(),
        fleet.servicers["i-001"].called.wait(),
        fleet.servicers["i-002"].called.wait(),
    ]
    await asyncio.wait_for(asyncio.gather(*waiting), timeout=10)
    cancel.set()
    outcomes = by_id(await asyncio.wait_for(run, timeout=5.0))
    assert outcomes["i-000"].result is Result.APPLIED
    assert [outcomes[i].error for i in ("i-001", "i-002")] == [CANCELLED_ERROR] * 2
    assert {outcomes[i].result for i in ("i-001", "i-002")} == {Result.FAILED}


async def test_a_cancel_set_before_the_start_calls_nobody(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([answer()])
    cancel = asyncio.Event()
    cancel.set()
    [outcome] = await fanout.run(targets=fleet.targets, request=REQUEST, policy=FAST, cancel=cancel)
    assert outcome.error == CANCELLED_ERROR
    assert fleet.servicers["i-000"].calls == 0


async def test_the_bearer_token_is_read_per_rollout_and_sent_as_metadata(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut, tmp_path: Any
) -> None:
    fleet = await fleet_factory([answer()])
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    policy = RefreshPolicy(token_file=str(token_file), allow_plaintext=True)  # an in-process fake
    await fanout.run(targets=fleet.targets, request=REQUEST, policy=policy)
    token_file.write_text("rotated-token")
    await fanout.run(targets=fleet.targets, request=REQUEST, policy=policy)
    sent = [m.get("authorization") for m in fleet.servicers["i-000"].metadata]
    assert sent == ["Bearer first-token", "Bearer rotated-token"]


async def test_an_unreadable_token_file_fails_every_target_with_the_reason(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut, tmp_path: Any
) -> None:
    fleet = await fleet_factory([answer()], [answer()])
    policy = RefreshPolicy(token_file=str(tmp_path / "missing"), allow_plaintext=True)
    outcomes = await fanout.run(targets=fleet.targets, request=REQUEST, policy=policy)
    assert {o.result for o in outcomes} == {Result.FAILED}
    assert all(o.error is not None and "cannot read token file" in o.error for o in outcomes)
    assert sum(s.calls for s in fleet.servicers.values()) == 0


async def test_an_open_breaker_fails_fast_and_is_retried_after_its_cool_down(
    fleet_factory: Callable[..., Awaitable[Fleet]],
) -> None:
    fleet = await fleet_factory(
        [abort(grpc.StatusCode.UNAVAILABLE), abort(grpc.StatusCode.UNAVAILABLE), answer()]
    )
    breakers = BreakerRegistry(failure_threshold=2, cool_down_seconds=1.5)
    channels = ChannelPool()
    engine = FanOut(channels=channels, breakers=breakers)
    try:
        policy = RefreshPolicy(max_attempts=2, deadline_seconds=10.0, backoff_base_seconds=0.01)
        [first] = await engine.run(targets=fleet.targets, request=REQUEST, policy=policy)
        assert (first.result, first.attempts) == (Result.FAILED, 2)
        assert breakers.state(fleet.targets[0].address) is BreakerState.OPEN
        calls = fleet.servicers["i-000"].calls
        # With a deadline shorter than the cool-down the open breaker fails fast, calling nobody.
        policy = RefreshPolicy(max_attempts=2, deadline_seconds=0.5, backoff_base_seconds=0.01)
        [second] = await engine.run(targets=fleet.targets, request=REQUEST, policy=policy)
        assert second.attempts == 1
        assert second.error is not None
        assert "CIRCUIT_OPEN" in second.error
        assert fleet.servicers["i-000"].calls == calls
        # With room in the deadline, the attempt after the cool-down (the half-open probe) goes through.
        policy = RefreshPolicy(max_attempts=3, deadline_seconds=5.0, backoff_base_seconds=0.01)
        [third] = await engine.run(targets=fleet.targets, request=REQUEST, policy=policy)
        assert third.result is Result.APPLIED
        assert breakers.state(fleet.targets[0].address) is BreakerState.CLOSED
    finally:
        await channels.aclose()


async def test_channels_are_reused_across_rollouts_and_closed_when_endpoints_go(
    fleet_factory: Callable[..., Awaitable[Fleet]],
) -> None:
    fleet = await fleet_factory([answer()], [answer()])
    channels = ChannelPool()
    engine = FanOut(channels=channels, breakers=BreakerRegistry())
    try:
        await engine.run(targets=fleet.targets, request=REQUEST, policy=FAST)
        stub = channels.stub(fleet.targets[0].address, None)
        await engine.run(targets=fleet.targets, request=REQUEST, policy=FAST)
        assert channels.stub(fleet.targets[0].address, None) is stub
        assert len(channels) == 2
        assert channels.close_missing([fleet.targets[1].address]) == 1
        assert channels.addresses() == {fleet.targets[1].address}
    finally:
        await channels.aclose()
    assert len(channels) == 0


async def test_the_engine_leaves_counting_outcomes_to_the_rollout_that_settles_them(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    # a Failed target may turn out Gone after the wave (rollouts.departures): counting it here would
    # count it as a failure first (the wave loop counts: test_rollouts_wave_runner)
    def count(result: str) -> float:
        return REGISTRY.get_sample_value("config_refresh_instance_refreshes_total", {"result": result}) or 0.0

    applied, failed = count("Applied"), count("Failed")
    fleet = await fleet_factory([answer()], [abort(grpc.StatusCode.INVALID_ARGUMENT)])
    finished = await fanout.run(targets=fleet.targets, request=REQUEST, policy=FAST)
    assert sorted(o.result.value for o in finished) == ["Applied", "Failed"]
    assert (count("Applied") - applied, count("Failed") - failed) == (0, 0)


async def test_idle_channels_and_their_breakers_are_dropped_at_the_next_rollout(
    fleet_factory: Callable[..., Awaitable[Fleet]],
) -> None:
    fleet = await fleet_factory([answer()], [answer()])
    now = [0.0]
    channels = ChannelPool(idle_seconds=60.0, monotonic=lambda: now[0])
    breakers = BreakerRegistry()
    engine = FanOut(channels=channels, breakers=breakers)
    try:
        await engine.run(targets=fleet.targets, request=REQUEST, policy=FAST)
        breakers.get(fleet.targets[0].address).record_failure()
        now[0] = 30.0
        await engine.run(targets=fleet.targets[1:], request=REQUEST, policy=FAST)
        now[0] = 61.0
        await engine.run(targets=fleet.targets[1:], request=REQUEST, policy=FAST)
        assert channels.addresses() == {fleet.targets[1].address}
        assert breakers.get(fleet.targets[0].address).consecutive_failures == 0
    finally:
        await channels.aclose()


async def test_a_bounded_pool_closes_the_least_recently_used_channel(
    fleet_factory: Callable[..., Awaitable[Fleet]],
) -> None:
    fleet = await fleet_factory([answer()], [answer()], [answer()])
    first, second, third = fleet.targets
    channels = ChannelPool(max_channels=2)
    engine = FanOut(channels=channels, breakers=BreakerRegistry())
    try:
        for targets in ([first], [second], [first], [third]):  # `second` is the least recently used
            [outcome] = await engine.run(targets=targets, request=REQUEST, policy=FAST)
            assert outcome.result is Result.APPLIED
        assert channels.addresses() == {first.address, third.address}
        assert channels.evicted == 1
        [outcome] = await engine.run(targets=[second], request=REQUEST, policy=FAST)  # reconnects
        assert outcome.result is Result.APPLIED
        assert channels.addresses() == {third.address, second.address}
    finally:
        await channels.aclose()


async def test_the_breaker_of_an_evicted_channel_is_dropped_once_its_address_has_been_idle_as_long(
    fleet_factory: Callable[..., Awaitable[Fleet]],
) -> None:
    fleet = await fleet_factory([answer()], [answer()])
    first, second = fleet.targets
    now = [0.0]
    channels = ChannelPool(max_channels=1, idle_seconds=60.0, monotonic=lambda: now[0])
    breakers = BreakerRegistry()
    engine = FanOut(channels=channels, breakers=breakers)
    try:
        await engine.run(targets=[first], request=REQUEST, policy=FAST)
        breakers.get(first.address).record_failure()
        now[0] = 30.0
        await engine.run(targets=[second], request=REQUEST, policy=FAST)  # evicts `first`
        assert channels.addresses() == {second.address}
        now[0] = 50.0
        await engine.run(targets=[second], request=REQUEST, policy=FAST)
        assert breakers.get(first.address).consecutive_failures == 1  # evicted, not yet idle for 60 s
        now[0] = 61.0
        await engine.run(targets=[second], request=REQUEST, policy=FAST)
        assert breakers.get(first.address).consecutive_failures == 0  # dropped: a new, closed breaker
        assert breakers.get(second.address) is breakers.get(second.address)
    finally:
        await channels.aclose()


async def test_an_evicted_address_used_again_is_not_swept_as_idle(
    fleet_factory: Callable[..., Awaitable[Fleet]],
) -> None:
    fleet = await fleet_factory([answer()], [answer()])
    first, second = fleet.targets
    now = [0.0]
    tight = ChannelPool(max_channels=1, idle_seconds=60.0, monotonic=lambda: now[0])
    engine = FanOut(channels=tight, breakers=BreakerRegistry())
    try:
        await engine.run(targets=[first], request=REQUEST, policy=FAST)
        await engine.run(targets=[second], request=REQUEST, policy=FAST)  # evicts `first`
        now[0] = 40.0
        await engine.run(targets=[first], request=REQUEST, policy=FAST)  # back, evicts `second`
        now[0] = 70.0  # both were evicted once after their use at 0; only `second` is still out
        assert tight.sweep_idle() == {second.address}
        assert tight.sweep_idle() == set()  # reported once
    finally:
        await tight.aclose()


async def test_a_channel_closed_to_make_room_lets_its_running_call_finish(
    fleet_factory: Callable[..., Awaitable[Fleet]],
) -> None:
    release = asyncio.Event()

    async def held(request: pb.RefreshRequest, context: Any) -> pb.RefreshResponse:
        await release.wait()
        return pb.RefreshResponse(result=pb.REFRESH_RESULT_APPLIED, applied_version=request.version)

    fleet = await fleet_factory([held], [answer()])
    slow, other = fleet.targets
    channels = ChannelPool(max_channels=1)
    engine = FanOut(channels=channels, breakers=BreakerRegistry())
    patient = RefreshPolicy(timeout_seconds=30.0, max_attempts=1, deadline_seconds=60.0)
    try:
        running = asyncio.create_task(engine.run(targets=[slow], request=REQUEST, policy=patient))
        await fleet.servicers["i-000"].called.wait()
        [outcome] = await engine.run(targets=[other], request=REQUEST, policy=patient)
        assert outcome.result is Result.APPLIED
        assert channels.addresses() == {other.address}
        assert channels.evicted == 1
        release.set()
        [outcome] = await running
        assert outcome.result is Result.APPLIED
        assert fleet.servicers["i-000"].calls == 1
    finally:
        await channels.aclose()


async def test_a_call_cut_by_its_evicted_channel_closing_is_retried_on_a_new_channel(
    fleet_factory: Callable[..., Awaitable[Fleet]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a loaded operator a call can outlive the eviction's grace; grpc.aio then cancels it on this side
    # and raises CancelledError. That must be one failed attempt, not "the rollout was stopped".
    monkeypatch.setattr("refresh_operator.fanout.channels.EVICTION_GRACE_SECONDS", 0.05)
    fleet = await fleet_factory([hang(), answer()], [answer()])
    slow, other = fleet.targets
    channels = ChannelPool(max_channels=1)
    engine = FanOut(channels=channels, breakers=BreakerRegistry())
    patient = RefreshPolicy(
        timeout_seconds=30.0, max_attempts=3, deadline_seconds=60.0, backoff_base_seconds=0.01
    )
    cancelled_before = attempts_counted("CANCELLED")
    try:
        running = asyncio.create_task(engine.run(targets=[slow], request=REQUEST, policy=patient))
        await fleet.servicers["i-000"].called.wait()
        [outcome] = await engine.run(targets=[other], request=REQUEST, policy=patient)  # evicts `slow`
        assert outcome.result is Result.APPLIED
        [outcome] = await asyncio.wait_for(running, 20)
        assert outcome.result is Result.APPLIED, outcome.error
        assert outcome.attempts == 2
        assert fleet.servicers["i-000"].calls == 2
        assert attempts_counted("CANCELLED") == cancelled_before + 1
    finally:
        await channels.aclose()


def attempts_counted(code: str) -> float:
    return REGISTRY.get_sample_value("config_refresh_refresh_attempts_total", {"code": code}) or 0.0


async def test_a_resumed_rollout_keeps_its_original_deadline(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([answer()])
    policy = RefreshPolicy(deadline_seconds=30.0)
    [outcome] = await fanout.run(
        targets=fleet.targets, request=REQUEST, policy=policy, started_at=time.time() - 31.0
    )
    assert outcome.result is Result.FAILED
    assert outcome.attempts == 0
    assert outcome.error is not None
    assert "deadline of 30s passed" in outcome.error
    assert fleet.servicers["i-000"].calls == 0


async def test_a_target_listed_twice_is_called_once(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([answer()])
    outcomes = await fanout.run(targets=fleet.targets * 2, request=REQUEST, policy=FAST)
    assert [o.target.instance_id for o in outcomes] == ["i-000"]
    assert fleet.servicers["i-000"].calls == 1


async def test_a_failing_progress_callback_does_not_stop_the_rollout(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([answer()], [answer()])

    def broken(outcome: TargetOutcome) -> None:
        raise RuntimeError("status patch failed")

    outcomes = await fanout.run(targets=fleet.targets, request=REQUEST, policy=FAST, on_outcome=broken)
    assert [o.result for o in outcomes] == [Result.APPLIED, Result.APPLIED]


@pytest.mark.parametrize(
    "policy",
    [
        RefreshPolicy(token_file="/nonexistent/token"),
        RefreshPolicy(token_audience="configrefresh.io/apps.local/config-service"),
    ],
)
async def test_a_token_is_never_sent_over_plaintext(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut, policy: RefreshPolicy
) -> None:
    fleet = await fleet_factory([answer()], [answer()])
    outcomes = await fanout.run(targets=fleet.targets, request=REQUEST, policy=policy)
    assert {o.result for o in outcomes} == {Result.FAILED}
    assert all(o.error is not None and o.error.startswith("PlaintextCredentials") for o in outcomes)
    assert sum(s.calls for s in fleet.servicers.values()) == 0


async def test_a_secure_string_value_is_never_sent_over_plaintext(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    fleet = await fleet_factory([answer()])
    secret = pb.RefreshRequest()
    secret.CopyFrom(REQUEST)
    secret.value_type = pb.VALUE_TYPE_SECURE_STRING
    secret.payload_mode = pb.PAYLOAD_MODE_VALUE
    secret.value = "s3cr3t"
    outcomes = await fanout.run(targets=fleet.targets, request=secret, policy=RefreshPolicy())
    assert outcomes[0].result is Result.FAILED
    assert outcomes[0].error is not None
    assert "SecureString" in outcomes[0].error
    assert fleet.servicers["i-000"].calls == 0
    invalidation = pb.RefreshRequest()
    invalidation.CopyFrom(secret)
    invalidation.payload_mode = pb.PAYLOAD_MODE_INVALIDATE
    invalidation.ClearField("value")
    outcomes = await fanout.run(targets=fleet.targets, request=invalidation, policy=RefreshPolicy())
    assert fleet.servicers["i-000"].calls == 1


async def test_a_minted_token_is_sent_for_the_routes_audience(
    fleet_factory: Callable[..., Awaitable[Fleet]],
) -> None:
    asked: list[str] = []

    async def mint(audience: str, expiration: int) -> tuple[str, float]:
        asked.append(audience)
        return f"token-for-{audience}", time.time() + expiration

    tokens = TokenCache(mint)
    channels = ChannelPool()
    engine = FanOut(channels=channels, breakers=BreakerRegistry(), tokens=tokens)
    fleet = await fleet_factory([answer()])
    for audience in ("a", "a", "b"):
        policy = RefreshPolicy(token_audience=audience, allow_plaintext=True)  # an in-process fake
        await engine.run(targets=fleet.targets, request=REQUEST, policy=policy)
    await channels.aclose()
    sent = [m.get("authorization") for m in fleet.servicers["i-000"].metadata]
    assert sent == ["Bearer token-for-a", "Bearer token-for-a", "Bearer token-for-b"]
    assert asked == ["a", "b"]


async def test_a_rollout_leaves_no_reference_cycle_holding_its_tasks_targets_or_outcomes(
    fleet_factory: Callable[..., Awaitable[Fleet]], fanout: FanOut
) -> None:
    """The operator collects its young objects seldom and its old ones almost never (collector.py),
    so whatever a rollout leaves in a reference cycle stays in memory long after the rollout: at 1,000
    routes that was every target's task, coroutine and outcome. Reference counting must free them."""
    fleet = await fleet_factory(*[[answer()] for _ in range(5)])
    await fanout.run(targets=fleet.targets, request=REQUEST, policy=FAST)  # channels opened, warm
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        outcomes = await fanout.run(targets=fleet.targets, request=REQUEST, policy=FAST)
        assert {o.result for o in outcomes} == {Result.APPLIED}
        del outcomes
        gc.collect()
        left = [
            item
            for item in gc.garbage
            if (isinstance(item, asyncio.Task) and item.get_name().startswith("refresh "))
            or isinstance(item, TargetOutcome | Target | Launcher)
            or (inspect.isfunction(item) and item.__module__.startswith("refresh_operator.fanout."))
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
