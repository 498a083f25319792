"""A failed target is re-checked in Cloud Map before it counts: one that left the service is Gone."""

from __future__ import annotations

from prometheus_client import REGISTRY

from refresh_operator.fanout import CANCELLED_ERROR, DiscoveryError, Result, Target, TargetOutcome
from refresh_operator.rollouts.departures import GONE_MESSAGE, mark_gone, settle_departures
from tests.unit.fakes.rollouts import targets


def outcome(target: Target, result: Result, error: str | None = None) -> TargetOutcome:
    acked = result.acknowledged
    return TargetOutcome(target, result, 3 if acked else 0, 3, error, 1.0 if acked else None)


def gone_count() -> float:
    sample = REGISTRY.get_sample_value("config_refresh_instance_refreshes_total", {"result": "Gone"})
    return sample or 0.0


def test_a_failed_target_no_longer_registered_is_gone_and_one_still_registered_stays_failed() -> None:
    a, b, c = targets(3)
    refused = "UNAVAILABLE: Connection refused (attempt 3/3)"
    marked = mark_gone(
        [outcome(a, Result.APPLIED), outcome(b, Result.FAILED, refused), outcome(c, Result.FAILED, refused)],
        present={a.instance_id, c.instance_id},
    )
    assert [o.result for o in marked] == [Result.APPLIED, Result.GONE, Result.FAILED]
    gone = marked[1]
    assert gone.error is not None
    assert gone.error.startswith(GONE_MESSAGE)
    assert refused in gone.error
    assert (gone.target, gone.attempts, gone.acknowledged_at) == (b, 3, None)
    assert marked[2] == outcome(c, Result.FAILED, refused)


def test_only_failures_are_rechecked_not_answers_or_cancelled_calls() -> None:
    a, b, c = targets(3)
    before = [
        outcome(a, Result.APPLIED),
        outcome(b, Result.REJECTED, "bad value"),
        outcome(c, Result.FAILED, CANCELLED_ERROR),
    ]
    assert mark_gone(before, present=set()) == before


async def test_cloud_map_is_asked_once_and_only_when_something_failed() -> None:
    a, b = targets(2)
    asked: list[int] = []

    async def present() -> list[Target]:
        asked.append(1)
        return [a]

    fine = [outcome(a, Result.APPLIED), outcome(b, Result.STALE)]
    assert await settle_departures(fine, present=present, where="svc") == fine
    assert asked == []
    counted = gone_count()  # the wave loop counts settled outcomes, not the re-check
    settled = await settle_departures(
        [outcome(a, Result.FAILED, "UNAVAILABLE"), outcome(b, Result.FAILED, "UNAVAILABLE")],
        present=present,
        where="svc",
    )
    assert [o.result for o in settled] == [Result.FAILED, Result.GONE]
    assert asked == [1]
    assert gone_count() == counted


async def test_a_failed_recheck_excuses_nothing() -> None:
    (a,) = targets(1)

    async def present() -> list[Target]:
        raise DiscoveryError("DiscoverInstances failed for Cloud Map service apps.local/svc: throttled")

    failed = [outcome(a, Result.FAILED, "UNAVAILABLE")]
    assert await settle_departures(failed, present=present, where="svc") == failed


def test_the_operator_s_results_are_the_api_s() -> None:
    from configrefresh_api.phases import InstanceResult

    assert {str(r) for r in Result} | {"Pending"} == {str(r) for r in InstanceResult}
    assert not Result.GONE.acknowledged  # it never answered: no latency, never "already done"
