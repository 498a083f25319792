"""The rollout orchestrator's phases, with in-process fakes for the API, Cloud Map, SSM and the fan-out."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from configrefresh_api.labels import LABEL_HALTED
from configrefresh_api.times import canonical_time
from configrefresh_api.versions import Operation
from refresh_operator import status
from refresh_operator.aws import AwsClients, Blocking
from refresh_operator.context import OperatorContext
from refresh_operator.fanout import Result, Target
from refresh_operator.parameter_store import ParameterSnapshot
from refresh_operator.rollouts import Rollouts
from refresh_operator.routes import RouteIndex, route_from_object
from refresh_operator.settings import OperatorSettings
from refresh_operator.values import ValueCache
from tests.unit.fakes.rollouts import T0, FakeDiscovery, FakeFanOut, FakeKube, FakeSsm, targets

NS = "team-a"
PARAMETER = "/config-service/acme/orders/db_url"


class Harness:
    def __init__(
        self, *, found: list[Target], answer: Callable[[Target], Result], rollout: Any = None
    ) -> None:
        spec: dict[str, Any] = {
            "parameterPrefix": "/config-service/",
            "discovery": {"cloudMap": {"namespace": "apps.local", "service": "config-service"}},
        }
        if rollout is not None:
            spec["rollout"] = rollout
        self.routes = RouteIndex()
        self.routes.upsert(
            route_from_object(
                {"metadata": {"name": "orders", "namespace": NS, "uid": "u", "generation": 1}, "spec": spec}
            )
        )
        self.kube = FakeKube()
        self.values = ValueCache()
        self.fanout = FakeFanOut(answer)
        self.discovery = FakeDiscovery(found)
        self.ssm = FakeSsm(PARAMETER, 3, T0)
        self.blocking = Blocking(threads=2)
        self.events: dict[str, list[tuple[str, str, str]]] = {}
        self.rollouts = Rollouts(
            context=OperatorContext(
                settings=OperatorSettings(queue_url="https://sqs.example/q", region="us-east-1"),
                clients=AwsClients(sqs=None, ssm=self.ssm, servicediscovery=None),
                blocking=self.blocking,
                kube=self.kube,  # type: ignore[arg-type]
                routes=self.routes,
                values=self.values,
            ),
            fanout=self.fanout,
            discover=self.discovery,
        )

    def spec(self, version: int, *, modified: datetime.datetime = T0) -> dict[str, Any]:
        return {
            "route": "orders",
            "parameter": {
                "name": PARAMETER,
                "version": version,
                "lastModified": canonical_time(modified),
                "operation": "Upsert",
                "type": "String",
            },
            "source": {"trigger": "event"},
        }

    def cache(self, name: str, version: int, *, modified: datetime.datetime = T0) -> None:
        """The consumer's read, handed over (so the rollout reads nothing itself)."""
        snapshot = ParameterSnapshot(
            PARAMETER, Operation.UPSERT, version, modified, "String", f"value-{version}"
        )
        self.values.put(NS, name, snapshot)

    async def run(
        self,
        name: str,
        version: int,
        *,
        current: dict[str, Any] | None = None,
        resume: bool = False,
        uid: str = "uid-1",
    ) -> None:
        await self.rollouts.run(
            namespace=NS,
            name=name,
            spec=self.spec(version),
            current=current or {},
            generation=1,
            post_event=lambda kind, reason, message: self.events.setdefault(name, []).append(
                (kind, reason, message)
            ),
            resume=resume,
            uid=uid,
        )

    def reasons(self, name: str) -> list[str]:
        return [reason for _, reason, _ in self.events.get(name, [])]


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def build(**kwargs: Any) -> Harness:
        harness = Harness(**kwargs)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.blocking.shutdown()


async def test_every_instance_applied_is_succeeded_with_the_latency_from_commit(
    make: Callable[..., Harness],
) -> None:
    h = make(found=targets(3), answer=lambda _: Result.APPLIED)
    h.cache("r-v3", 3)
    await h.run("r-v3", 3)
    final = h.kube.final("r-v3")
    assert final["phase"] == status.SUCCEEDED
    assert (final["targets"], final["refreshed"], final["failed"], final["progress"]) == (3, 3, 0, "3/3")
    assert final["latencyMs"] == 50
    assert [c["reason"] for c in final["conditions"]] == ["Succeeded"]
    assert h.kube.patches_of("r-v3")[0]["phase"] == status.IN_PROGRESS
    assert h.fanout.calls == [["i-00", "i-01", "i-02"]]
    assert h.fanout.requests[0].value == "value-3"
    assert h.reasons("r-v3") == ["Started", "Succeeded"]


async def test_a_handler_run_on_a_copy_from_before_the_end_does_nothing(make: Callable[..., Harness]) -> None:
    # kopf, behind on its watch, hands the handler the object as it was before the final status: still
    # InProgress. The rollout this process ended is not fanned out again, nor its final status rewritten.
    h = make(found=targets(2), answer=lambda _: Result.APPLIED)
    h.cache("r-v3", 3)
    await h.run("r-v3", 3)
    assert h.kube.final("r-v3")["phase"] == status.SUCCEEDED
    patches, calls = len(h.kube.status_patches), len(h.fanout.calls)
    skipped = stale_runs_skipped()
    h.fanout.answer = lambda _: Result.FAILED  # a second fan-out would now fail: it must not happen
    await h.run("r-v3", 3, current=h.kube.patches_of("r-v3")[0])
    assert h.kube.patches_of("r-v3")[0]["phase"] == status.IN_PROGRESS  # the copy handed over
    assert (len(h.kube.status_patches), len(h.fanout.calls)) == (patches, calls)
    assert h.kube.final("r-v3")["phase"] == status.SUCCEEDED
    assert stale_runs_skipped() == skipped + 1

    # The same name deleted and created again is another object (another uid): it rolls out.
    await h.run("r-v3", 3, uid="uid-2")
    assert len(h.fanout.calls) == calls + 1
    assert h.kube.final("r-v3")["phase"] == status.FAILED


async def halted_after_its_first_wave(make: Callable[..., Harness], count: int) -> tuple[Harness, Any]:
    """Rollout r-v3 in waves 1 and 100% over `count` instances, Halted: its one first-wave instance failed."""
    rollout = {"waves": ["1", "100%"], "bakeSeconds": 0, "failureThreshold": 0}
    h = make(
        found=targets(count),
        answer=lambda t: Result.FAILED if t.instance_id == "i-00" else Result.APPLIED,
        rollout=rollout,
    )
    h.cache("r-v3", 3)
    await h.run("r-v3", 3)
    halted = h.kube.final("r-v3")
    assert halted["phase"] == "Halted"
    return h, halted


async def test_a_stale_copy_of_a_halted_rollout_waits_and_resume_still_runs_it(
    make: Callable[..., Harness],
) -> None:
    h, halted = await halted_after_its_first_wave(make, 2)
    await h.run("r-v3", 3, current=h.kube.patches_of("r-v3")[0])  # InProgress: older than the halt
    assert h.fanout.calls == [["i-00"]]
    await h.run("r-v3", 3, current=halted, resume=True)
    assert h.fanout.calls == [["i-00"], ["i-01"]]
    assert h.kube.final("r-v3")["phase"] == status.PARTIALLY_FAILED


def stale_runs_skipped() -> float:
    return REGISTRY.get_sample_value("config_refresh_rollout_stale_runs_skipped_total") or 0.0


async def test_some_instances_failing_is_partially_failed_naming_them(make: Callable[..., Harness]) -> None:
    h = make(found=targets(4), answer=lambda t: Result.FAILED if t.instance_id == "i-02" else Result.APPLIED)
    h.cache("r-v3", 3)
    await h.run("r-v3", 3)
    final = h.kube.final("r-v3")
    assert final["phase"] == status.PARTIALLY_FAILED
    assert (final["refreshed"], final["failed"]) == (3, 1)
    assert final["conditions"][0]["reason"] == "SomeTargetsFailed"
    assert final["conditions"][0]["message"] == "1/4 failed: i-02"


async def test_every_instance_failing_is_failed_with_the_error(make: Callable[..., Harness]) -> None:
    h = make(found=targets(2), answer=lambda _: Result.FAILED)
    h.cache("r-v3", 3)
    await h.run("r-v3", 3)
    final = h.kube.final("r-v3")
    assert final["phase"] == status.FAILED
    assert final["conditions"][0]["reason"] == "AllTargetsFailed"
    assert "UNAVAILABLE: down" in final["conditions"][0]["message"]
    assert h.reasons("r-v3")[-1] == status.FAILED


async def test_no_healthy_instance_is_succeeded_with_no_targets(make: Callable[..., Harness]) -> None:
    h = make(found=[], answer=lambda _: Result.APPLIED)
    h.cache("r-v3", 3)
    await h.run("r-v3", 3)
    final = h.kube.final("r-v3")
    assert final["phase"] == status.SUCCEEDED
    assert {c["type"] for c in final["conditions"]} == {"NoTargets", "Ready"}
    assert h.fanout.calls == []


async def test_a_missing_route_fails_the_rollout_without_a_fan_out(make: Callable[..., Harness]) -> None:
    h = make(found=targets(1), answer=lambda _: Result.APPLIED)
    h.routes.remove(NS, "orders")
    await h.run("r-v3", 3)
    final = h.kube.final("r-v3")
    assert final["phase"] == status.FAILED
    assert final["conditions"][0]["reason"] == "RouteNotFound"
    assert h.fanout.calls == []


async def test_a_failed_first_wave_halts_before_the_next_and_resume_runs_it(
    make: Callable[..., Harness],
) -> None:
    h, halted = await halted_after_its_first_wave(make, 4)
    assert (halted["waves"], halted["currentWave"], halted["failed"]) == ([1, 4], 1, 1)
    assert {c["type"]: c["reason"] for c in halted["conditions"]} == {
        "Ready": "WaveFailed",
        "Halted": "WaveFailed",
    }
    assert h.fanout.calls == [["i-00"]]
    assert ("r-v3", {"metadata": {"labels": {LABEL_HALTED: "true"}}}) in h.kube.patches
    assert h.reasons("r-v3")[-1] == "Halted"

    # `configctl rollout resume`: the next wave runs; the first wave's failure stays counted.
    await h.run("r-v3", 3, current=halted, resume=True)
    final = h.kube.final("r-v3")
    assert h.fanout.calls[1] == ["i-01", "i-02", "i-03"]
    assert final["phase"] == status.PARTIALLY_FAILED
    assert (final["refreshed"], final["failed"], final["currentWave"]) == (3, 1, 2)
    assert ("r-v3", {"metadata": {"labels": {LABEL_HALTED: None}}}) in h.kube.patches


async def test_a_halted_rollout_waits_and_abort_fails_it(make: Callable[..., Harness]) -> None:
    h = make(found=targets(1), answer=lambda _: Result.APPLIED)
    await h.run("r-v3", 3, current={"phase": "Halted"})
    assert h.kube.status_patches == []
    await h.rollouts.abort(
        namespace=NS, name="r-v3", current={"phase": "Halted"}, generation=1, post_event=lambda *_: None
    )
    final = h.kube.final("r-v3")
    assert final["phase"] == status.FAILED
    assert {c["type"]: c["reason"] for c in final["conditions"]} == {"Ready": "Aborted", "Halted": "Aborted"}


async def test_a_newer_rollout_supersedes_the_running_older_one(make: Callable[..., Harness]) -> None:
    h = make(found=targets(2), answer=lambda _: Result.APPLIED)
    h.fanout.hold = True
    h.cache("r-v3", 3)
    h.cache("r-v4", 4, modified=T0 + datetime.timedelta(seconds=1))
    older = asyncio.create_task(h.run("r-v3", 3))
    await asyncio.wait_for(h.fanout.started.wait(), timeout=10)
    spec = h.spec(4, modified=T0 + datetime.timedelta(seconds=1))
    newer = asyncio.create_task(
        h.rollouts.run(
            namespace=NS, name="r-v4", spec=spec, current={}, generation=1, post_event=lambda *_: None
        )
    )
    await asyncio.wait_for(older, timeout=10)  # ends only once cancelled: nothing releases it
    h.fanout.release.set()
    await asyncio.wait_for(newer, timeout=10)
    superseded = h.kube.final("r-v3")
    assert superseded["phase"] == status.SUPERSEDED
    assert superseded["supersededBy"] == "r-v4"
    assert superseded["refreshed"] == 0  # cancelled calls are not counted as failures
    assert h.kube.final("r-v4")["phase"] == status.SUCCEEDED
    assert h.reasons("r-v3")[-1] == "Superseded"


async def test_an_older_rollout_starting_after_a_newer_one_is_superseded_at_once(
    make: Callable[..., Harness],
) -> None:
    h = make(found=targets(2), answer=lambda _: Result.APPLIED)
    h.fanout.hold = True
    h.cache("r-v4", 4, modified=T0 + datetime.timedelta(seconds=1))
    h.cache("r-v3", 3)
    spec = h.spec(4, modified=T0 + datetime.timedelta(seconds=1))
    newer = asyncio.create_task(
        h.rollouts.run(
            namespace=NS, name="r-v4", spec=spec, current={}, generation=1, post_event=lambda *_: None
        )
    )
    await asyncio.wait_for(h.fanout.started.wait(), timeout=10)
    await h.run("r-v3", 3)
    assert h.kube.final("r-v3")["phase"] == status.SUPERSEDED
    assert h.kube.final("r-v3")["supersededBy"] == "r-v4"
    assert len(h.fanout.calls) == 1
    h.fanout.release.set()
    await asyncio.wait_for(newer, timeout=10)
    assert h.kube.final("r-v4")["phase"] == status.SUCCEEDED


async def test_a_newer_version_in_the_store_gets_its_rollout_and_this_one_steps_aside(
    make: Callable[..., Harness],
) -> None:
    h = make(found=targets(2), answer=lambda _: Result.APPLIED)
    h.ssm.parameter.update(Version=5, LastModifiedDate=T0 + datetime.timedelta(seconds=5))
    await h.run("r-v3", 3)  # nothing cached: the rollout reads Parameter Store, which holds v5
    assert [body["spec"]["parameter"]["version"] for body in h.kube.created] == [5]
    successor = h.kube.created[0]["metadata"]["name"]
    final = h.kube.final("r-v3")
    assert (final["phase"], final["supersededBy"]) == (status.SUPERSEDED, successor)
    assert h.fanout.calls == []


async def test_an_older_halted_rollout_is_superseded_by_a_newer_one(make: Callable[..., Harness]) -> None:
    h = make(found=targets(1), answer=lambda _: Result.APPLIED)
    h.kube.items = [
        {
            "metadata": {"name": "r-v2", "generation": 1},
            "spec": h.spec(2, modified=T0 - datetime.timedelta(seconds=5)),
            "status": {"phase": "Halted"},
        }
    ]
    h.cache("r-v3", 3)
    await h.run("r-v3", 3)
    assert h.kube.final("r-v2")["phase"] == status.SUPERSEDED
    assert h.kube.final("r-v2")["supersededBy"] == "r-v3"
    assert "TookOver" in h.reasons("r-v3")
    assert h.kube.final("r-v3")["phase"] == status.SUCCEEDED


async def test_a_failed_instance_that_left_cloud_map_is_gone_and_the_rollout_succeeds(
    make: Callable[..., Harness],
) -> None:
    def answer(target: Target) -> Result:
        if target.instance_id != "i-01":
            return Result.APPLIED
        # Terminated after the targets were picked: podSync deregisters it while its calls fail.
        h.discovery.found = [t for t in h.discovery.found if t.instance_id != "i-01"]
        return Result.FAILED

    h = make(found=targets(3), answer=answer)
    h.cache("r-v3", 3)
    await h.run("r-v3", 3)
    final = h.kube.final("r-v3")
    assert final["phase"] == status.SUCCEEDED
    assert (final["targets"], final["refreshed"], final["failed"], final["gone"]) == (3, 2, 0, 1)
    assert final["progress"] == "2/2"
    assert final["conditions"][0]["message"] == "2/2 instances hold v3 (1 left Cloud Map during the rollout)"
    gone = [entry for entry in final["instances"] if entry["id"] == "i-01"]
    assert gone[0]["result"] == "Gone"
    assert gone[0]["error"].startswith("deregistered during the rollout")
    assert len(h.discovery.queries) == 2  # the targets, then the one re-check of the failed target


async def test_a_failed_instance_still_in_cloud_map_stays_failed(make: Callable[..., Harness]) -> None:
    h = make(found=targets(3), answer=lambda t: Result.FAILED if t.instance_id == "i-01" else Result.APPLIED)
    h.cache("r-v3", 3)
    await h.run("r-v3", 3)
    final = h.kube.final("r-v3")
    assert final["phase"] == status.PARTIALLY_FAILED
    assert (final["refreshed"], final["failed"], final["gone"]) == (2, 1, 0)
    assert [e["result"] for e in final["instances"] if e["id"] == "i-01"] == ["Failed"]
    assert len(h.discovery.queries) == 2


async def test_a_gone_instance_does_not_count_against_a_wave_s_failure_threshold(
    make: Callable[..., Harness],
) -> None:
    def answer(target: Target) -> Result:
        if target.instance_id == "i-00":
            h.discovery.found = h.discovery.found[1:]
            return Result.FAILED
        return Result.APPLIED

    h = make(
        found=targets(3),
        answer=answer,
        rollout={"waves": ["1", "100%"], "bakeSeconds": 0, "failureThreshold": 0},
    )
    h.cache("r-v3", 3)
    await h.run("r-v3", 3)
    final = h.kube.final("r-v3")
    assert final["phase"] == status.SUCCEEDED
    assert h.fanout.calls == [["i-00"], ["i-01", "i-02"]]
    assert (final["refreshed"], final["gone"]) == (2, 1)
