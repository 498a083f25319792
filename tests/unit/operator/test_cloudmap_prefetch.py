"""The discovery a change starts early (cloudmap/prefetch.py): taken once, only fresh, never an error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import REGISTRY

from refresh_operator.aws import AwsClients, Blocking
from refresh_operator.cloudmap import DiscoveryError, Instance
from refresh_operator.cloudmap.prefetch import DiscoveryPrefetch
from refresh_operator.consumer import Consumer
from refresh_operator.context import OperatorContext
from refresh_operator.routes import RouteIndex, route_from_object
from refresh_operator.settings import load_settings
from refresh_operator.values import ValueCache
from tests.unit.fakes.aws import FakeSqs, FakeSsm
from tests.unit.fakes.kube import FakeKube


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CloudMap:
    """A discovery stand-in: answers with one instance named after the call, or fails as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.fail_next = False

    async def __call__(
        self, client: Any, *, namespace: str, service: str, query_parameters: Mapping[str, str]
    ) -> list[Instance]:
        self.calls.append((namespace, service, dict(query_parameters)))
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next = False
            raise DiscoveryError("DiscoverInstances failed: ThrottlingException")
        return [Instance(f"answer-{len(self.calls)}", {}, True)]


def prefetch(cloud_map: CloudMap, clock: Clock) -> DiscoveryPrefetch:
    found = DiscoveryPrefetch(discover=cloud_map, fresh_seconds=1.0, active_seconds=300.0, clock=clock)
    found.rollout_started()
    return found


async def ask(found: DiscoveryPrefetch, query: dict[str, str] | None = None) -> list[str]:
    answer = await found.healthy_instances(None, namespace="n", service="s", query_parameters=query or {})
    return [instance.instance_id for instance in answer]


async def test_the_rollout_takes_the_prefetch_and_cloud_map_is_asked_once() -> None:
    cloud_map, clock = CloudMap(), Clock()
    found = prefetch(cloud_map, clock)
    assert found.start(None, namespace="n", service="s", query_parameters={"tenant": "a"})
    clock.now += 0.2
    assert await ask(found, {"tenant": "a"}) == ["answer-1"]
    assert len(cloud_map.calls) == 1


async def test_a_prefetch_is_taken_once_then_cloud_map_is_asked_again() -> None:
    cloud_map, clock = CloudMap(), Clock()
    found = prefetch(cloud_map, clock)
    found.start(None, namespace="n", service="s", query_parameters={})
    assert await ask(found) == ["answer-1"]
    assert await ask(found) == ["answer-2"]


@pytest.mark.parametrize(
    ("namespace", "service", "query"),
    [("n", "s", {"tenant": "b"}), ("n", "other", {"tenant": "a"}), ("m", "s", {"tenant": "a"})],
)
async def test_a_prefetch_for_another_service_or_query_is_not_taken(
    namespace: str, service: str, query: dict[str, str]
) -> None:
    cloud_map, clock = CloudMap(), Clock()
    found = prefetch(cloud_map, clock)
    found.start(None, namespace=namespace, service=service, query_parameters=query)
    await asyncio.sleep(0.01)  # the prefetch has asked
    assert await ask(found, {"tenant": "a"}) == ["answer-2"]
    assert cloud_map.calls == [(namespace, service, query), ("n", "s", {"tenant": "a"})]


async def test_a_prefetch_older_than_the_fresh_window_is_not_taken() -> None:
    cloud_map, clock = CloudMap(), Clock()
    found = prefetch(cloud_map, clock)
    found.start(None, namespace="n", service="s", query_parameters={})
    await asyncio.sleep(0.01)
    clock.now += 1.5
    assert await ask(found) == ["answer-2"]


async def test_a_failed_prefetch_is_not_an_answer_the_rollout_asks_again() -> None:
    cloud_map, clock = CloudMap(), Clock()
    found = prefetch(cloud_map, clock)
    cloud_map.fail_next = True
    found.start(None, namespace="n", service="s", query_parameters={})
    assert await ask(found) == ["answer-2"]


async def test_the_rollout_s_own_failure_still_raises() -> None:
    cloud_map, clock = CloudMap(), Clock()
    found = prefetch(cloud_map, clock)
    cloud_map.fail_next = True
    with pytest.raises(DiscoveryError, match="ThrottlingException"):
        await ask(found)


async def test_a_replica_that_runs_no_rollouts_prefetches_nothing() -> None:
    cloud_map, clock = CloudMap(), Clock()
    idle = DiscoveryPrefetch(discover=cloud_map, active_seconds=300.0, clock=clock)
    assert not idle.start(None, namespace="n", service="s", query_parameters={})
    active = prefetch(cloud_map, clock)
    clock.now += 301
    assert not active.start(None, namespace="n", service="s", query_parameters={})
    await asyncio.sleep(0.01)
    assert cloud_map.calls == []


async def test_a_second_start_for_the_same_service_and_query_shares_the_first() -> None:
    cloud_map, clock = CloudMap(), Clock()
    found = prefetch(cloud_map, clock)
    assert found.start(None, namespace="n", service="s", query_parameters={})
    assert not found.start(None, namespace="n", service="s", query_parameters={})
    assert await ask(found) == ["answer-1"]
    assert len(cloud_map.calls) == 1


async def test_pending_prefetches_are_bounded() -> None:
    cloud_map, clock = CloudMap(), Clock()
    found = DiscoveryPrefetch(discover=cloud_map, max_pending=2, clock=clock)
    found.rollout_started()
    for service in ("a", "b", "c"):
        found.start(None, namespace="n", service=service, query_parameters={})
    await asyncio.sleep(0.01)
    asked = len(cloud_map.calls)
    await found.healthy_instances(None, namespace="n", service="a", query_parameters={})
    assert len(cloud_map.calls) == asked + 1  # "a" was displaced by "c": asked again
    await found.healthy_instances(None, namespace="n", service="c", query_parameters={})
    assert len(cloud_map.calls) == asked + 1  # "c" is still there


def unused_prefetches() -> float:
    value = REGISTRY.get_sample_value("config_refresh_discovery_prefetches_total", {"outcome": "unused"})
    return value or 0.0


async def test_a_prefetch_no_rollout_took_is_dropped_once_stale() -> None:
    cloud_map, clock = CloudMap(), Clock()
    found = prefetch(cloud_map, clock)
    found.start(None, namespace="n", service="a", query_parameters={})
    await asyncio.sleep(0.01)
    before = unused_prefetches()
    clock.now += 1.5
    await ask(found)  # another service's rollout
    assert unused_prefetches() == before + 1


async def test_the_consumer_starts_the_route_s_discovery_with_the_change() -> None:
    routes = RouteIndex()
    routes.upsert(
        route_from_object(
            {
                "metadata": {"name": "orders", "namespace": "team-a", "uid": "u"},
                "spec": {
                    "parameterPrefix": "/config-service/",
                    "scopePattern": "^/config-service/(?P<tenant>[^/]+)/",
                    "discovery": {
                        "cloudMap": {"namespace": "n", "service": "s", "queryParameters": {"t": "{tenant}"}}
                    },
                },
            }
        )
    )
    cloud_map, clock = CloudMap(), Clock()
    found = prefetch(cloud_map, clock)
    values = ValueCache()
    kube: Any = FakeKube(values=values)  # the Kube calls the consumer makes
    settings = load_settings({"CONFIG_REFRESH_QUEUE_URL": "https://sqs.local/q", "AWS_REGION": "us-east-1"})
    consumer = Consumer(
        context=OperatorContext(
            settings=settings,
            clients=AwsClients(sqs=FakeSqs(), ssm=FakeSsm(), servicediscovery=None),
            blocking=Blocking(threads=2),
            kube=kube,
            routes=routes,
            values=values,
            discovery=found,
        )
    )
    body = {
        "id": "e-1",
        "version": "0",
        "source": "aws.ssm",
        "detail-type": "Parameter Store Change",
        "time": "2026-11-26T10:00:00Z",
        "detail": {"name": "/config-service/acme/db", "type": "String", "operation": "Update"},
    }
    await consumer.handle({"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": json.dumps(body)})
    assert cloud_map.calls == [("n", "s", {"t": "acme"})]
    assert await ask(found, {"t": "acme"}) == ["answer-1"]
