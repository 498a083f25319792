"""podSync's planner: desired vs. actual, both ways, never touching instances its namespace does not own."""

from __future__ import annotations

import asyncio
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

NS = "team-a"
ATTRS = {
    "AWS_INSTANCE_IPV4": "127.0.0.21",
    "AWS_INSTANCE_PORT": "50051",
    "k8s-namespace": NS,
    "managed-by": "config-refresh-operator",
}


def actual(
    instance_id: str = "p", attributes: Mapping[str, str] = ATTRS, healthy: bool | None = True
) -> ActualInstance:
    return ActualInstance(instance_id, dict(attributes), healthy)


def intent(
    instance_id: str = "p", healthy: bool = True, attributes: Mapping[str, str] | None = ATTRS
) -> PodIntent:
    return PodIntent(instance_id, None if attributes is None else dict(attributes), healthy, NS)


def legacy(pod: str, namespace: str = NS, healthy: bool | None = True) -> ActualInstance:
    """An instance an older podSync registered under the bare pod name."""
    return actual(pod, {**ATTRS, "k8s-namespace": namespace, "k8s-pod": pod}, healthy)


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


def test_a_gone_pod_is_deregistered_only_if_its_namespace_owns_the_instance() -> None:
    assert plan_gone(actual(), NS) == [Deregister("p")]
    assert plan_gone(actual(attributes={"AWS_INSTANCE_IPV4": "10.0.0.1"}), NS) == []
    assert plan_gone(actual(attributes={**ATTRS, "k8s-namespace": "team-b"}), NS) == []
    assert plan_gone(None, NS) == []
    assert plan_gone(None, NS, [legacy("svc-0")]) == [Deregister("svc-0")]


def test_an_instance_with_the_pods_id_that_another_namespace_owns_is_left_alone() -> None:
    theirs = actual(f"{NS}.svc-0", {**ATTRS, "k8s-namespace": "team-b"})
    assert plan_pod(intent(f"{NS}.svc-0"), theirs) == []
    assert plan_pod(intent(f"{NS}.svc-0", healthy=False), theirs) == []


def test_route_plan_repairs_drift_both_ways_and_leaves_foreign_instances() -> None:
    plan = plan_route(
        namespace=NS,
        intents={"a": intent("a"), "b": intent("b")},
        actual={
            "a": actual("a"),
            "orphan": actual("orphan"),
            "foreign": actual("foreign", attributes={"AWS_INSTANCE_IPV4": "10.0.0.9"}),
            "sibling": actual("sibling"),
            "no-namespace": actual("no-namespace", {"managed-by": "config-refresh-operator"}),
            "team-b.orphan": actual("team-b.orphan", {**ATTRS, "k8s-namespace": "team-b"}),
        },
        backed_elsewhere={"sibling"},
    )
    assert plan == [Register("b", ATTRS, healthy=True), Deregister("orphan")]


@pytest.mark.parametrize(
    ("wanted", "held", "expected"),
    [
        # Ready, not yet under the new id: register the new id, then (after it) the old one goes.
        (
            intent(f"{NS}.svc-0"),
            None,
            [
                Register(f"{NS}.svc-0", ATTRS, healthy=True),
                Deregister("svc-0", successor=f"{NS}.svc-0"),
            ],
        ),
        # Not Ready but registered before: it stays registered (UNHEALTHY) under the new id.
        (
            intent(f"{NS}.svc-0", healthy=False),
            None,
            [
                Register(f"{NS}.svc-0", ATTRS, healthy=False),
                Deregister("svc-0", successor=f"{NS}.svc-0"),
            ],
        ),
        # No IP: nothing to register, the stale old instance goes.
        (
            intent(f"{NS}.svc-0", attributes=None, healthy=False),
            None,
            [Deregister("svc-0", successor=f"{NS}.svc-0")],
        ),
        # Already under the new id: the old one goes at once.
        (intent(f"{NS}.svc-0"), actual(f"{NS}.svc-0"), [Deregister("svc-0", successor=f"{NS}.svc-0")]),
    ],
)
def test_a_pod_registered_under_its_bare_name_moves_to_its_namespaced_id(
    wanted: PodIntent, held: ActualInstance | None, expected: list[object]
) -> None:
    assert plan_pod(wanted, held, [legacy("svc-0")]) == expected


def test_another_namespaces_legacy_instance_is_neither_moved_nor_removed() -> None:
    theirs = legacy("svc-0", namespace="team-b")
    assert plan_pod(intent(f"{NS}.svc-0"), None, [theirs]) == [Register(f"{NS}.svc-0", ATTRS, healthy=True)]
    plan = plan_route(namespace=NS, intents={f"{NS}.svc-0": intent(f"{NS}.svc-0")}, actual={"svc-0": theirs})
    assert plan == [Register(f"{NS}.svc-0", ATTRS, healthy=True)]


def test_route_plan_moves_legacy_instances_of_live_pods_and_removes_those_of_gone_pods() -> None:
    plan = plan_route(
        namespace=NS,
        intents={f"{NS}.svc-0": intent(f"{NS}.svc-0"), f"{NS}.svc-1": intent(f"{NS}.svc-1")},
        actual={
            "svc-0": legacy("svc-0"),
            "svc-1": legacy("svc-1"),
            f"{NS}.svc-1": actual(f"{NS}.svc-1"),
            "svc-9": legacy("svc-9"),
            "svc-7": legacy("svc-7"),
        },
        backed_elsewhere={f"{NS}.svc-7"},  # a sibling route of the namespace selects svc-7: its move
    )
    assert plan == [
        Register(f"{NS}.svc-0", ATTRS, healthy=True),
        Deregister("svc-0", successor=f"{NS}.svc-0"),
        Deregister("svc-1", successor=f"{NS}.svc-1"),
        Deregister("svc-9", successor=f"{NS}.svc-9"),
    ]


class RecordingWriter:
    """Stands in for Cloud Map: records calls, fails the ones it is told to; registrations are slow."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.calls: list[tuple[str, str]] = []
        self.finished: list[tuple[str, str]] = []

    async def register(
        self,
        service_id: str,
        instance_id: str,
        attributes: Mapping[str, str],
        *,
        healthy: bool,
        replace: bool = False,
    ) -> None:
        await self._call("register", instance_id, delay=0.05)

    async def set_health(self, service_id: str, instance_id: str, healthy: bool) -> None:
        await self._call("set_health", instance_id)

    async def deregister(self, service_id: str, instance_id: str) -> None:
        await self._call("deregister", instance_id)

    async def _call(self, kind: str, instance_id: str, delay: float = 0.0) -> None:
        self.calls.append((kind, instance_id))
        await asyncio.sleep(delay)
        if instance_id in self.failing:
            raise RuntimeError(f"{kind} {instance_id} failed")
        self.finished.append((kind, instance_id))


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


async def test_an_old_id_is_deregistered_only_after_its_successor_is_registered() -> None:
    writer = RecordingWriter(failing={"b.svc-1"})
    outcomes = await execute(
        writer,
        service_id="srv",
        actions=[
            Deregister("svc-0", successor="a.svc-0"),
            Register("a.svc-0", ATTRS, healthy=True),
            Deregister("svc-1", successor="b.svc-1"),
            Register("b.svc-1", ATTRS, healthy=True),
            Deregister("svc-9", successor="a.svc-9"),  # nothing registers a.svc-9 here: not held back
        ],
    )
    assert writer.finished.index(("register", "a.svc-0")) < writer.finished.index(("deregister", "svc-0"))
    # The successor failed: the old instance stays (it is what still serves the pod), and says nothing.
    assert ("deregister", "svc-1") not in writer.calls
    assert ("deregister", "svc-9") in writer.finished
    assert sorted((o.action.instance_id, o.error is None) for o in outcomes) == [
        ("a.svc-0", True),
        ("b.svc-1", False),
        ("svc-0", True),
        ("svc-9", True),
    ]
