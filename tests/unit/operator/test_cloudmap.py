"""The cloudmap package's shared parts: the service look-up, the listing fallback of discovery, retries.

The boto3 client is a scripted stand-in (unit tier); discovery's happy paths run against moto in
tests/integration/test_fanout_discovery.py and registration's in tests/e2e/test_podsync_*.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from prometheus_client import REGISTRY

from refresh_operator.backoff import Backoff
from refresh_operator.cloudmap import CloudMapError, DiscoveryError, Instance, healthy_instances
from refresh_operator.cloudmap.client import Calls, find_service, plain_call, snake
from refresh_operator.cloudmap.discovery import DISCOVER_MAX_RESULTS
from refresh_operator.fanout import discover_instances
from tests.unit.fakes.aws import ScriptedClient, client_error


def instance(number: int, **attributes: str) -> dict[str, Any]:
    return {
        "Id": f"i-{number:04d}",
        "InstanceId": f"i-{number:04d}",
        "Attributes": {"AWS_INSTANCE_IPV4": f"10.0.{number // 256}.{number % 256}", **attributes},
    }


def full_reply() -> dict[str, Any]:
    return {"Instances": [instance(n) for n in range(DISCOVER_MAX_RESULTS)]}


def lookup_script() -> dict[str, list[Any]]:
    return {
        "list_namespaces": [
            {"Namespaces": [{"Id": "ns-1", "Name": "elsewhere"}], "NextToken": "2"},
            {
                "Namespaces": [
                    {"Id": "ns-2", "Name": "x", "Properties": {"HttpProperties": {"HttpName": "prod"}}}
                ]
            },
        ],
        "list_services": [{"Services": [{"Id": "srv-1", "Name": "orders"}]}],
        "get_service": [{"Service": {"Id": "srv-1", "NamespaceId": "ns-2"}}],
    }


def test_api_names_map_to_boto3_methods() -> None:
    assert snake("GetInstancesHealthStatus") == "get_instances_health_status"
    assert snake("ListServices") == "list_services"


async def test_find_service_matches_the_http_name_across_pages() -> None:
    client = ScriptedClient(**lookup_script())
    found = await find_service(plain_call(client), "prod", "orders")
    assert found.namespace_ids == ["ns-2"]
    assert found.service is not None
    assert found.service["Id"] == "srv-1"
    filters = [params["Filters"] for api, params in client.calls if api == "list_services"]
    assert filters == [[{"Name": "NAMESPACE_ID", "Values": ["ns-2"], "Condition": "EQ"}]]


async def test_a_short_reply_is_the_answer() -> None:
    client = ScriptedClient(discover_instances=[{"Instances": [instance(2), instance(1)]}])
    found = await healthy_instances(client, namespace="prod", service="orders", query_parameters={"a": "b"})
    assert [i.instance_id for i in found] == ["i-0002", "i-0001"]
    assert all(i.healthy for i in found)
    assert client.calls[0][1]["HealthStatus"] == "HEALTHY"
    assert client.calls[0][1]["QueryParameters"] == {"a": "b"}


async def test_a_full_reply_switches_to_the_listing_filtered_by_attributes_and_health() -> None:
    listed = [instance(n, color="blue" if n % 2 else "green") for n in range(150)]
    statuses = {f"i-{n:04d}": "UNHEALTHY" if n % 3 == 0 else "HEALTHY" for n in range(150)}
    client = ScriptedClient(
        discover_instances=[full_reply()],
        **lookup_script(),
        list_instances=[{"Instances": listed[:100], "NextToken": "t"}, {"Instances": listed[100:]}],
        get_instances_health_status=[{"Status": statuses}],
    )
    found = await healthy_instances(
        client, namespace="prod", service="orders", query_parameters={"color": "blue"}
    )
    expected = [f"i-{n:04d}" for n in range(150) if n % 2 and n % 3]
    assert [i.instance_id for i in found] == expected
    listings = [params for api, params in client.calls if api == "list_instances"]
    assert [params.get("NextToken") for params in listings] == [None, "t"]
    assert {params["ServiceId"] for params in listings} == {"srv-1"}


@pytest.mark.parametrize(
    ("count", "listed"), [(DISCOVER_MAX_RESULTS, False), (DISCOVER_MAX_RESULTS + 1, True)]
)
async def test_a_full_reply_from_a_service_holding_no_more_instances_is_the_answer(
    count: int, listed: bool
) -> None:
    script = lookup_script()
    script["get_service"] = [{"Service": {"Id": "srv-1", "NamespaceId": "ns-2", "InstanceCount": count}}]
    everyone = [instance(n) for n in range(count)]
    client = ScriptedClient(
        discover_instances=[full_reply()],
        **script,
        list_instances=[{"Instances": everyone}],
        get_instances_health_status=[{"Status": {i["Id"]: "HEALTHY" for i in everyone}}],
    )
    found = await healthy_instances(client, namespace="prod", service="orders", query_parameters={})
    assert len(found) == count
    assert any(api == "list_instances" for api, _ in client.calls) == listed


async def test_the_service_found_once_is_asked_for_by_its_id_after() -> None:
    """The second full reply costs one GetService, not the namespace and service listings again."""
    script = lookup_script()
    held = {"Id": "srv-1", "Name": "orders", "NamespaceId": "ns-2", "InstanceCount": DISCOVER_MAX_RESULTS}
    script["get_service"] = [{"Service": held}, {"Service": held}]
    client = ScriptedClient(discover_instances=[full_reply(), full_reply()], **script)
    for _ in range(2):
        found = await healthy_instances(client, namespace="prod", service="orders", query_parameters={})
        assert len(found) == DISCOVER_MAX_RESULTS
    apis = [api for api, _ in client.calls]
    assert apis == [
        "discover_instances",
        "list_namespaces",
        "list_namespaces",
        "list_services",
        "get_service",
        "discover_instances",
        "get_service",
    ]
    assert client.calls[-1][1] == {"Id": "srv-1"}


@pytest.mark.parametrize(
    "second_answer",
    [
        client_error("ServiceNotFound"),
        {"Service": {"Id": "srv-1", "Name": "renamed", "NamespaceId": "ns-2"}},
    ],
    ids=["deleted", "another-service"],
)
async def test_a_remembered_service_that_is_gone_is_looked_up_again(second_answer: Any) -> None:
    script = lookup_script()
    first = {"Id": "srv-1", "Name": "orders", "NamespaceId": "ns-2", "InstanceCount": DISCOVER_MAX_RESULTS}
    again = {"Id": "srv-9", "Name": "orders", "NamespaceId": "ns-2", "InstanceCount": DISCOVER_MAX_RESULTS}
    script["get_service"] = [{"Service": first}, second_answer, {"Service": again}]
    script["list_namespaces"] = script["list_namespaces"] * 2
    script["list_services"] = [{"Services": [{"Id": "srv-1", "Name": "orders"}]}, {"Services": [again]}]
    client = ScriptedClient(discover_instances=[full_reply(), full_reply()], **script)
    for _ in range(2):
        assert len(await healthy_instances(client, namespace="prod", service="orders", query_parameters={}))
    asked = [params["Id"] for api, params in client.calls if api == "get_service"]
    assert asked == ["srv-1", "srv-1", "srv-9"]
    assert [api for api, _ in client.calls].count("list_services") == 2


async def test_a_service_without_health_check_counts_every_listed_instance_healthy() -> None:
    client = ScriptedClient(
        discover_instances=[full_reply()],
        **lookup_script(),
        list_instances=[{"Instances": [instance(n) for n in range(120)]}],
        get_instances_health_status=[client_error("CustomHealthNotFound")],
    )
    found = await healthy_instances(client, namespace="prod", service="orders", query_parameters={})
    assert len(found) == 120


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ({"list_namespaces": [{"Namespaces": []}]}, "Cloud Map namespace prod not found"),
        (
            {"list_namespaces": [{"Namespaces": [{"Id": "ns", "Name": "prod"}]}], "list_services": [{}]},
            "Cloud Map service orders not found in namespace prod",
        ),
        (
            {"list_namespaces": [client_error("AccessDeniedException")]},
            "listing instances failed for Cloud Map service prod/orders: AccessDeniedException",
        ),
    ],
)
async def test_listing_failures_are_discovery_errors(script: dict[str, list[Any]], message: str) -> None:
    client = ScriptedClient(discover_instances=[full_reply()], **script)
    with pytest.raises(DiscoveryError, match=message):
        await healthy_instances(client, namespace="prod", service="orders", query_parameters={})


async def test_discovery_runs_off_the_event_loop() -> None:
    loop_thread: list[bool] = []

    class Probe(ScriptedClient):
        def discover_instances(self, **params: Any) -> dict[str, Any]:
            try:
                asyncio.get_running_loop()
                loop_thread.append(True)
            except RuntimeError:
                loop_thread.append(False)
            return {"Instances": [instance(1, AWS_INSTANCE_PORT="8443")]}

    targets = await discover_instances(Probe(), namespace="prod", service="orders", query_parameters={})
    assert loop_thread == [False]
    assert [(t.instance_id, t.address) for t in targets] == [("i-0001", "10.0.0.1:8443")]


def calls_total(api: str, outcome: str) -> float:
    labels = {"api": api, "outcome": outcome}
    return REGISTRY.get_sample_value("config_refresh_podsync_cloudmap_calls_total", labels) or 0.0


async def test_calls_retry_throttling_and_network_errors_then_give_up() -> None:
    client = ScriptedClient(
        list_services=[
            client_error("ThrottlingException"),
            EndpointConnectionError(endpoint_url="http://nowhere"),
            {"Services": []},
        ]
    )
    before = calls_total("ListServices", "throttled")
    call = Calls(client, backoff=Backoff(base_seconds=0.0, max_seconds=0.0), max_retries=2)
    assert await call("ListServices") == {"Services": []}
    assert calls_total("ListServices", "throttled") == before + 1

    stuck = Calls(
        ScriptedClient(list_services=[client_error("ServiceUnavailable")]),
        backoff=Backoff(base_seconds=0.0, max_seconds=0.0),
        max_retries=1,
    )
    with pytest.raises(CloudMapError) as caught:
        await stuck("ListServices")
    assert caught.value.reason == "CloudMapUnavailable"
    assert "after 2 attempts" in caught.value.message


async def test_calls_do_not_retry_what_a_person_must_fix() -> None:
    client = ScriptedClient(list_services=[client_error("AccessDeniedException")])
    with pytest.raises(ClientError):
        await Calls(client, backoff=Backoff(base_seconds=0.0, max_seconds=0.0))("ListServices")
    assert len(client.calls) == 1


def test_instances_are_plain_values() -> None:
    assert Instance("a", {"k": "v"}, None) == Instance("a", {"k": "v"}, None)
