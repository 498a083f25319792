"""The recorder: the one place the operator creates ConfigRefresh objects (consumer, supersession, resync,
anti-entropy), the value handed to the rollout, and duplicates and API failures as the callers see them."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from configrefresh_api import ConfigRefresh, Operation, Trigger
from configrefresh_api.naming import refresh_name
from refresh_operator.aws import Blocking
from refresh_operator.events import ParameterChangeEvent
from refresh_operator.kube import KubeError
from refresh_operator.parameter_store import ParameterSnapshot
from refresh_operator.recorder import Recorder
from refresh_operator.routes import Route, route_from_object
from refresh_operator.values import ValueCache

NAME = "/config-service/acme/orders/db_url"
T0 = datetime.datetime(2026, 11, 26, 10, 0, 0, 250000, tzinfo=datetime.UTC)


class FakeKube:
    """create_refresh as the Kubernetes API answers it: 409 (False) for a name it already holds."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail: KubeError | None = None

    def create_refresh(self, namespace: str, body: Mapping[str, Any]) -> bool:
        if self.fail is not None:
            raise self.fail
        key = (namespace, str(body["metadata"]["name"]))
        if key in self.objects:
            return False
        self.objects[key] = dict(body)
        return True


def route(payload: str = "value", pattern: str | None = r"^/config-service/(?P<tenant>[^/]+)/") -> Route:
    spec: dict[str, Any] = {
        "parameterPrefix": "/config-service/",
        "discovery": {"cloudMap": {"namespace": "n", "service": "s"}},
        "refresh": {"payload": payload},
    }
    if pattern:
        spec["scopePattern"] = pattern
    return route_from_object(
        {"metadata": {"name": "orders", "namespace": "team-a", "uid": "u-1"}, "spec": spec}
    )


def upsert(version: int = 7) -> ParameterSnapshot:
    return ParameterSnapshot(
        name=NAME,
        operation=Operation.UPSERT,
        version=version,
        last_modified=T0,
        value_type="String",
        value="s3cr3t-value",
    )


def deletion() -> ParameterSnapshot:
    return ParameterSnapshot(
        name=NAME, operation=Operation.DELETE, version=0, last_modified=T0, value_type="String"
    )


@pytest.fixture
async def parts() -> AsyncIterator[tuple[Recorder, FakeKube, ValueCache]]:
    blocking = Blocking(threads=2)
    kube, values = FakeKube(), ValueCache()
    yield Recorder(kube_api=kube, blocking=blocking, values=values), kube, values  # type: ignore[arg-type]
    blocking.shutdown()


async def test_an_event_is_recorded_once_under_its_deterministic_name_and_its_value_handed_over(
    parts: tuple[Recorder, FakeKube, ValueCache],
) -> None:
    recorder, kube, values = parts
    event = ParameterChangeEvent(event_id="e-1", time=T0, name=NAME, operation="Update", value_type="String")
    first = await recorder.record(route(), upsert(), trigger=Trigger.EVENT, event=event)
    again = await recorder.record(route(), upsert(), trigger=Trigger.EVENT, event=event)
    assert (first.created, again.created, first.name) == (
        True,
        False,
        refresh_name(route="orders", parameter_name=NAME, version=7, last_modified=T0),
    )
    stored = ConfigRefresh.from_body(kube.objects[("team-a", first.name)])
    assert stored.spec.scope == {"tenant": "acme"}  # the route's scope of the name, by default
    assert (stored.spec.source.trigger, stored.spec.source.event_id, stored.spec.source.event_time) == (
        Trigger.EVENT,
        "e-1",
        T0,
    )
    assert stored.metadata.owner_references[0].uid == "u-1"
    assert "s3cr3t-value" not in str(kube.objects)  # the value never enters the object
    handed = values.take("team-a", first.name)
    assert handed is not None
    assert handed.value == "s3cr3t-value"


async def test_an_invalidate_route_and_an_inferred_deletion_hand_no_value_over(
    parts: tuple[Recorder, FakeKube, ValueCache],
) -> None:
    recorder, kube, values = parts
    invalidated = await recorder.record(route(payload="invalidate"), upsert(), trigger=Trigger.RESYNC)
    assert values.take("team-a", invalidated.name) is None
    gone = await recorder.record(route(), deletion(), trigger=Trigger.RESYNC)
    assert values.take("team-a", gone.name) is None  # the rollout confirms a deletion resync inferred
    body = kube.objects[("team-a", gone.name)]
    assert "version" not in body["spec"]["parameter"]
    assert body["spec"]["parameter"]["operation"] == "Delete"


async def test_a_repair_has_a_name_of_its_own_and_lists_its_targets(
    parts: tuple[Recorder, FakeKube, ValueCache],
) -> None:
    recorder, kube, _ = parts
    rollout = await recorder.record(route(), upsert(), trigger=Trigger.RESYNC)
    repair = await recorder.record(
        route(), upsert(), trigger=Trigger.RESYNC, targets=["team-a.p-1"], repair="pass-1 team-a.p-1"
    )
    assert repair.created
    assert repair.name != rollout.name
    assert repair.name.startswith(rollout.name + "-r")
    assert kube.objects[("team-a", repair.name)]["spec"]["targets"] == ["team-a.p-1"]
    assert "targets" not in kube.objects[("team-a", rollout.name)]["spec"]


async def test_an_api_failure_reaches_the_caller(parts: tuple[Recorder, FakeKube, ValueCache]) -> None:
    recorder, kube, _ = parts
    kube.fail = KubeError("create ConfigRefresh: HTTP 503", status=503)
    with pytest.raises(KubeError) as failed:
        await recorder.record(route(), upsert(), trigger=Trigger.EVENT)
    assert failed.value.status == 503
    assert not kube.objects
