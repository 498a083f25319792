"""The waiting logic, against an in-memory stand-in for the Kubernetes API (real API: tests/e2e)."""

from __future__ import annotations

from typing import Any

import pytest

from configctl.exitcodes import ConfigctlError, ExitCode
from configctl.wait import Expectation, Target, existing_names, expectations, wait_for
from configrefresh_api.naming import parameter_hash
from tests.unit.fakes.kube import FakeKube

NAME = "/config-service/acme/orders/db_url"


def route(name: str, prefix: str, pattern: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"parameterPrefix": prefix}
    if pattern is not None:
        spec["scopePattern"] = pattern
    return {"metadata": {"name": name}, "spec": spec}


def refresh(
    object_name: str,
    *,
    version: int,
    phase: str | None,
    route_name: str = "orders",
    created: str = "2026-11-26T10:00:00Z",
    superseded_by: str | None = None,
    instances: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"targets": 2, "refreshed": 2 if phase == "Succeeded" else 0}
    if phase is not None:
        status["phase"] = phase
    if superseded_by:
        status["supersededBy"] = superseded_by
    if instances is not None:
        status["instances"] = instances
    return {
        "metadata": {
            "name": object_name,
            "creationTimestamp": created,
            "labels": {
                "configrefresh.io/route": route_name,
                "configrefresh.io/parameter-hash": parameter_hash(NAME),
                "configrefresh.io/version": str(version),
            },
            "annotations": {"configrefresh.io/parameter-name": NAME},
        },
        "spec": {"route": route_name, "parameter": {"name": NAME, "version": version}},
        "status": status,
    }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(kube: FakeKube, expected: list[Expectation], timeout: float = 10.0) -> tuple[ExitCode, Any]:
    clock = Clock()
    return wait_for(kube, expected, timeout=timeout, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


def test_routes_claiming_the_parameter_are_expected() -> None:
    kube = FakeKube(
        [
            route("orders", "/config-service/", r"^/config-service/(?P<tenant>[^/]+)/orders/"),
            route("billing", "/config-service/", r"^/config-service/[^/]+/billing/"),
            route("all", "/config-service/acme/"),
        ],
        [[]],
    )
    expected, uncovered = expectations(kube, [Target(NAME, 3), Target("/elsewhere/x", 1)])  # type: ignore[arg-type]
    assert [(e.target.version, e.route) for e in expected] == [(3, "all"), (3, "orders")]
    assert uncovered == [Target("/elsewhere/x", 1)]


def test_waits_through_missing_and_in_progress_until_succeeded() -> None:
    kube = FakeKube(
        [],
        [
            [],
            [refresh("r-v3", version=3, phase="InProgress")],
            [refresh("r-v2", version=2, phase="Succeeded"), refresh("r-v3", version=3, phase="Succeeded")],
        ],
    )
    code, tracked = run(kube, [Expectation(Target(NAME, 3), "orders")])
    assert code is ExitCode.OK
    assert tracked[0].rollout.object_name == "r-v3"
    assert kube.selectors[0] == f"configrefresh.io/parameter-hash in ({parameter_hash(NAME)})"


def test_a_failed_rollout_is_reported_with_its_instances() -> None:
    failed = refresh(
        "r-v3",
        version=3,
        phase="PartiallyFailed",
        instances=[
            {"id": "i-1", "address": "127.0.0.10:1", "result": "Applied", "version": 3},
            {
                "id": "i-2",
                "address": "127.0.0.11:1",
                "result": "Failed",
                "attempts": 3,
                "error": "UNAVAILABLE",
            },
        ],
    )
    code, tracked = run(FakeKube([], [[failed]]), [Expectation(Target(NAME, 3), "orders")])
    assert code is ExitCode.ROLLOUT_FAILED
    assert [i.id for i in tracked[0].rollout.failed_instances()] == ["i-2"]


def test_a_superseded_rollout_is_followed_to_the_newer_one() -> None:
    polls = [
        [
            refresh("r-v3", version=3, phase="Superseded", superseded_by="r-v4"),
            refresh("r-v4", version=4, phase="Failed"),
        ]
    ]
    code, tracked = run(FakeKube([], polls), [Expectation(Target(NAME, 3), "orders")])
    assert code is ExitCode.ROLLOUT_FAILED
    assert tracked[0].rollout.object_name == "r-v4"


def test_a_rollout_that_never_finishes_times_out() -> None:
    code, tracked = run(
        FakeKube([], [[refresh("r-v3", version=3, phase="InProgress")]]),
        [Expectation(Target(NAME, 3), "orders")],
        timeout=3.0,
    )
    assert code is ExitCode.WAIT_TIMEOUT
    assert not tracked[0].final


def test_a_named_manual_refresh_is_not_confused_with_the_event_one() -> None:
    polls = [[refresh("event-v3", version=3, phase="Succeeded"), refresh("manual-v3", version=3, phase=None)]]
    code, _ = run(FakeKube([], polls), [Expectation(Target(NAME, 3), "orders", "manual-v3")], timeout=2.0)
    assert code is ExitCode.WAIT_TIMEOUT


class FlakyKube(FakeKube):
    """Fails the first `failures` list calls, as an API server restarting would."""

    def __init__(self, failures: int, polls: list[list[dict[str, Any]]]) -> None:
        super().__init__([], polls)
        self.failures = failures

    def list_refreshes(self, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        if self.failures > 0:
            self.failures -= 1
            raise ConfigctlError("Kubernetes: list failed: HTTP 503", exit_code=ExitCode.KUBE_ERROR)
        return super().list_refreshes(label_selector=label_selector)


def test_api_errors_while_polling_are_retried_until_the_deadline() -> None:
    kube = FlakyKube(3, [[refresh("r-v3", version=3, phase="Succeeded")]])
    code, _ = run(kube, [Expectation(Target(NAME, 3), "orders")])
    assert code is ExitCode.OK


def test_an_api_that_never_answers_is_a_kube_error() -> None:
    kube = FlakyKube(1000, [[]])
    with pytest.raises(ConfigctlError) as raised:
        run(kube, [Expectation(Target(NAME, 3), "orders")], timeout=2.0)
    assert raised.value.exit_code is ExitCode.KUBE_ERROR


def test_rollouts_from_before_the_write_are_ignored() -> None:
    """Versions restart at 1 after delete + re-create: the old life's v1 rollout is not ours."""
    old = refresh("r-v1-old", version=1, phase="Succeeded", created="2026-11-26T09:00:00Z")
    kube = FakeKube([], [[old], [old, refresh("r-v1-new", version=1, phase="Failed")]])
    ignore = existing_names(kube, [NAME])  # type: ignore[arg-type]
    assert ignore == {"r-v1-old"}
    code, tracked = wait_for(
        kube,  # type: ignore[arg-type]
        [Expectation(Target(NAME, 1), "orders")],
        timeout=10.0,
        ignore=ignore,
        clock=Clock(),
        sleep=lambda _: None,
    )
    assert code is ExitCode.ROLLOUT_FAILED
    assert tracked[0].rollout is not None
    assert tracked[0].rollout.object_name == "r-v1-new"
