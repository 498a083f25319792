"""podSync's planner: desired vs. actual, both ways, never touching instances it does not manage."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from refresh_operator.podsync.model import PodIntent
from refresh_operator.podsync.reconcile import (
    ActualInstance,
    Deregister,
    Register,
    SetHealth,
    execute,
    plan_gone,
    plan_pod,
    plan_route,
)

ATTRS = {
    "AWS_INSTANCE_IPV4": "127.0.0.21",
    "AWS_INSTANCE_PORT": "50051",
    "managed-by": "config-refresh-operator",
}


def actual(
    instance_id: str = "p", attributes: Mapping[str, str] = ATTRS, healthy: bool | None = True
) -> ActualInstance:
    return ActualInstance(instance_id, dict(attributes), healthy)


def intent(
    instance_id: str = "p", healthy: bool = True, attributes: Mapping[str, str] | None = ATTRS
) -> PodIntent:
    return PodIntent(instance_id, None if attributes is None else dict(attributes), healthy)


@pytest.mark.parametrize(
    ("wanted", "held", "expected"),
    [
        (intent(), None, [Register("p", ATTRS, healthy=True)]),
        (intent(healthy=False), None, []),
        (intent(attributes=None), None, []),
        (intent(), actual(), []),
        (intent(healthy=False), actual(), [SetHealth("p", healthy=False)]),
        (intent(), actual(healthy=False), [SetHealth("p", healthy=True)]),
        (intent(), actual(healthy=None), [SetHealth("p", healthy=True)]),
        (
            intent(attributes={**ATTRS, "tenant": "acme"}),
            actual(),
            [Register("p", {**ATTRS, "tenant": "acme"}, healthy=True, replace=True)],
        ),
        (intent(attributes=None, healthy=False), actual(), [SetHealth("p", healthy=False)]),
        (intent(), actual(attributes={**ATTRS, "AWS_INIT_HEALTH_STATUS": "UNHEALTHY"}), []),
        (intent(healthy=False), actual(attributes={"AWS_INSTANCE_IPV4": "10.0.0.1"}), []),
    ],
)
def test_plan_for_one_pod(wanted: PodIntent, held: ActualInstance | None, expected: list[object]) -> None:
    assert plan_pod(wanted, held) == expected


def test_a_gone_pod_is_deregistered_only_if_managed() -> None:
    assert plan_gone(actual()) == [Deregister("p")]
    assert plan_gone(actual(attributes={"AWS_INSTANCE_IPV4": "10.0.0.1"})) == []
    assert plan_gone(None) == []


def test_route_plan_repairs_drift_both_ways_and_leaves_foreign_instances() -> None:
    plan = plan_route(
        intents={"a": intent("a"), "b": intent("b")},
        actual={
            "a": actual("a"),
            "orphan": actual("orphan"),
            "foreign": actual("foreign", attributes={"AWS_INSTANCE_IPV4": "10.0.0.9"}),
            "sibling": actual("sibling"),
        },
        backed_elsewhere={"sibling"},
    )
    assert plan == [Register("b", ATTRS, healthy=True), Deregister("orphan")]


class RecordingWriter:
    """Stands in for Cloud Map: records calls, fails the ones it is told to."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.calls: list[tuple[str, str]] = []

    async def register(
        self,
        service_id: str,
        instance_id: str,
        attributes: Mapping[str, str],
        *,
        healthy: bool,
        replace: bool = False,
    ) -> None:
        self._call("register", instance_id)

    async def set_health(self, service_id: str, instance_id: str, healthy: bool) -> None:
        self._call("set_health", instance_id)

    async def deregister(self, service_id: str, instance_id: str) -> None:
        self._call("deregister", instance_id)

    def _call(self, kind: str, instance_id: str) -> None:
        self.calls.append((kind, instance_id))
        if instance_id in self.failing:
            raise RuntimeError(f"{kind} {instance_id} failed")


async def test_execute_runs_every_action_and_reports_each_failure() -> None:
    writer = RecordingWriter(failing={"b"})
    outcomes = await execute(
        writer,
        service_id="srv",
        actions=[Register("a", ATTRS, healthy=True), SetHealth("b", healthy=False), Deregister("c")],
    )
    assert sorted(writer.calls) == [("deregister", "c"), ("register", "a"), ("set_health", "b")]
    assert [(o.action.instance_id, o.error is None) for o in outcomes] == [
        ("a", True),
        ("b", False),
        ("c", True),
    ]
