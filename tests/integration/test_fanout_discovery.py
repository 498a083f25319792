"""Cloud Map discovery against the local AWS stack (moto server process): HEALTHY instances only,
filtered by the route's query parameters, complete beyond a full DiscoverInstances reply (the listing
fallback, run here with the reply capped at 100)."""

from __future__ import annotations

import pytest

from devstack.aws.local_aws import LocalAws
from refresh_operator.cloudmap import discovery
from refresh_operator.cloudmap.client import Call, plain_call
from refresh_operator.fanout import DiscoveryError, Target, discover_instances


async def _discover(local_aws: LocalAws, **query: str) -> list[Target]:
    return await discover_instances(
        local_aws.client("servicediscovery"),
        namespace=local_aws.namespace_name,
        service=local_aws.service_name,
        query_parameters=query,
    )


def count_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Cloud Map APIs discovery calls from now on, in order."""
    listed: list[str] = []

    def counting_call(client: object) -> Call:
        inner = plain_call(client)

        async def call(api: str, /, **params: object) -> dict[str, object]:
            listed.append(api)
            return await inner(api, **params)

        return call

    monkeypatch.setattr(discovery, "plain_call", counting_call)
    return listed


async def test_discovery_returns_healthy_instances_with_their_refresh_address(local_aws: LocalAws) -> None:
    local_aws.register_instance("orders-0", "127.0.0.10", 7001, attributes={"tenant": "acme"})
    local_aws.register_instance("orders-1", "127.0.0.11", 7002, attributes={"tenant": "acme"})
    targets = await _discover(local_aws)
    assert [(t.instance_id, t.address) for t in targets] == [
        ("orders-0", "127.0.0.10:7001"),
        ("orders-1", "127.0.0.11:7002"),
    ]
    assert targets[0].attributes["tenant"] == "acme"


async def test_discovery_excludes_unhealthy_instances(local_aws: LocalAws) -> None:
    for index in range(4):
        local_aws.register_instance(f"orders-{index}", f"127.0.0.{10 + index}", 7000)
    local_aws.set_health("orders-1", healthy=False)
    local_aws.register_instance("orders-9", "127.0.0.19", 7000, healthy=False)
    assert [t.instance_id for t in await _discover(local_aws)] == ["orders-0", "orders-2", "orders-3"]
    local_aws.set_health("orders-1", healthy=True)
    assert [t.instance_id for t in await _discover(local_aws)] == [
        "orders-0",
        "orders-1",
        "orders-2",
        "orders-3",
    ]


async def test_discovery_filters_by_every_query_parameter(local_aws: LocalAws) -> None:
    local_aws.register_instance("a-eu", "127.0.0.10", 7000, attributes={"tenant": "acme", "region": "eu"})
    local_aws.register_instance("a-us", "127.0.0.11", 7000, attributes={"tenant": "acme", "region": "us"})
    local_aws.register_instance("g-eu", "127.0.0.12", 7000, attributes={"tenant": "globex", "region": "eu"})
    assert [t.instance_id for t in await _discover(local_aws, tenant="acme")] == ["a-eu", "a-us"]
    assert [t.instance_id for t in await _discover(local_aws, tenant="acme", region="eu")] == ["a-eu"]
    assert await _discover(local_aws, tenant="initech") == []


async def test_an_instance_without_a_port_gets_the_route_port(local_aws: LocalAws) -> None:
    local_aws.client("servicediscovery").register_instance(
        ServiceId=local_aws.service_id, InstanceId="bare", Attributes={"AWS_INSTANCE_IPV4": "127.0.0.30"}
    )
    targets = await discover_instances(
        local_aws.client("servicediscovery"),
        namespace=local_aws.namespace_name,
        service=local_aws.service_name,
        query_parameters={},
        default_port=50051,
    )
    assert [t.address for t in targets] == ["127.0.0.30:50051"]


@pytest.mark.parametrize("reply_cap", [100, discovery.DISCOVER_MAX_RESULTS], ids=["listing", "one-reply"])
async def test_more_than_one_reply_of_instances_are_all_found(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch, reply_cap: int
) -> None:
    """130 instances: beyond a reply of 100 the listing fallback finds them all; with the real cap
    (1,000) one DiscoverInstances reply does, and the listing is not called."""
    monkeypatch.setattr(discovery, "DISCOVER_MAX_RESULTS", reply_cap)
    listed = count_calls(monkeypatch)
    client = local_aws.client("servicediscovery")
    for index in range(130):
        client.register_instance(
            ServiceId=local_aws.service_id,
            InstanceId=f"orders-{index:03d}",
            Attributes={
                "AWS_INSTANCE_IPV4": f"127.0.1.{index}",
                "AWS_INSTANCE_PORT": "7000",
                "tenant": "acme" if index % 10 else "globex",
            },
        )
    for index in (1, 2, 3):
        local_aws.set_health(f"orders-{index:03d}", healthy=False)
    targets = await _discover(local_aws, tenant="acme")
    expected = [f"orders-{i:03d}" for i in range(130) if i % 10 and i not in (1, 2, 3)]
    assert [t.instance_id for t in targets] == expected
    assert len(targets) == 114
    assert ("ListInstances" in listed) == (reply_cap < 130)


async def test_a_full_reply_is_the_answer_when_the_service_holds_no_more(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply as full as the cap, from a service whose InstanceCount is the cap: nothing was cut, so no
    listing; one instance more and the listing runs."""
    monkeypatch.setattr(discovery, "DISCOVER_MAX_RESULTS", 12)
    listed = count_calls(monkeypatch)
    for index in range(12):
        local_aws.register_instance(f"orders-{index:03d}", f"127.0.2.{index}", 7000)
    assert len(await _discover(local_aws)) == 12
    assert ("GetService" in listed, "ListInstances" in listed) == (True, False)
    local_aws.register_instance("orders-012", "127.0.2.12", 7000)
    assert len(await _discover(local_aws)) == 13
    assert "ListInstances" in listed


async def test_an_unknown_service_raises_a_discovery_error_naming_it(local_aws: LocalAws) -> None:
    with pytest.raises(DiscoveryError, match=rf"{local_aws.namespace_name}/no-such-service: ServiceNotFound"):
        await discover_instances(
            local_aws.client("servicediscovery"),
            namespace=local_aws.namespace_name,
            service="no-such-service",
            query_parameters={},
        )
