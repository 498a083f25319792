"""Cloud Map registration (podSync's writes): throttling backoff, operation tracking, actionable errors.

The boto3 client is replaced by a scripted stand-in (unit tier); the same code runs against moto in
tests/e2e/test_podsync_sync.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from refresh_operator.backoff import Backoff
from refresh_operator.cloudmap import CloudMapError, InstanceNotFound
from refresh_operator.cloudmap import Registrar as CloudMap
from tests.unit.fakes.aws import ScriptedClient, client_error

NO_WAIT = Backoff(base_seconds=0.0, max_seconds=0.0)
OK_OPERATION = {"Operation": {"Id": "op", "Status": "SUCCESS", "Type": "REGISTER_INSTANCE"}}


@pytest.mark.parametrize("code", ["ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"])
async def test_throttling_is_retried_then_the_operation_is_awaited(code: str) -> None:
    client = ScriptedClient(
        register_instance=[client_error(code), client_error(code), {"OperationId": "op"}],
        get_operation=[{"Operation": {"Id": "op", "Status": "PENDING"}}, OK_OPERATION],
    )
    await CloudMap(client, backoff=NO_WAIT).register("srv", "pod-0", {"a": "b"}, healthy=True)
    assert client.names() == ["register_instance"] * 3 + ["get_operation"] * 2


async def test_throttling_that_never_ends_becomes_a_throttled_error() -> None:
    client = ScriptedClient(register_instance=[client_error("ThrottlingException")])
    with pytest.raises(CloudMapError) as caught:
        await CloudMap(client, backoff=NO_WAIT, max_retries=3).register("srv", "p", {}, healthy=True)
    assert caught.value.reason == "Throttled"
    assert client.names() == ["register_instance"] * 4


async def test_a_failed_operation_is_reported_with_its_message() -> None:
    client = ScriptedClient(
        register_instance=[{"OperationId": "op"}],
        get_operation=[{"Operation": {"Id": "op", "Status": "FAIL", "ErrorMessage": "quota reached"}}],
    )
    with pytest.raises(CloudMapError, match="quota reached") as caught:
        await CloudMap(client, backoff=NO_WAIT).register("srv", "p", {}, healthy=True)
    assert caught.value.reason == "OperationFailed"


async def test_an_unhealthy_registration_asks_for_it_and_then_sets_it() -> None:
    client = ScriptedClient(
        register_instance=[{"OperationId": "op"}],
        get_operation=[OK_OPERATION],
        update_instance_custom_health_status=[{}],
    )
    await CloudMap(client, backoff=NO_WAIT).register("srv", "p", {"a": "b"}, healthy=False)
    assert client.calls[0][1]["Attributes"] == {"a": "b", "AWS_INIT_HEALTH_STATUS": "UNHEALTHY"}
    assert client.calls[-1] == (
        "update_instance_custom_health_status",
        {"ServiceId": "srv", "InstanceId": "p", "Status": "UNHEALTHY"},
    )


async def test_a_duplicate_request_waits_for_the_running_operation_and_retries() -> None:
    client = ScriptedClient(
        register_instance=[
            client_error("DuplicateRequest", DuplicateOperationId="running"),
            {"OperationId": "op"},
        ],
        get_operation=[OK_OPERATION],
    )
    await CloudMap(client, backoff=NO_WAIT).register("srv", "p", {}, healthy=True)
    assert client.names() == ["register_instance", "get_operation", "register_instance", "get_operation"]
    assert client.calls[1][1] == {"OperationId": "running"}


async def test_deregistering_a_missing_instance_is_done() -> None:
    client = ScriptedClient(deregister_instance=[client_error("InstanceNotFound")])
    await CloudMap(client, backoff=NO_WAIT).deregister("srv", "gone")


async def test_health_of_a_missing_instance_says_so() -> None:
    client = ScriptedClient(update_instance_custom_health_status=[client_error("InstanceNotFound")])
    with pytest.raises(InstanceNotFound):
        await CloudMap(client, backoff=NO_WAIT).set_health("srv", "gone", True)


def namespaces(*names: str) -> dict[str, Any]:
    return {"Namespaces": [{"Id": f"ns-{name}", "Name": name} for name in names]}


@pytest.fixture
def services() -> dict[str, Any]:
    return {
        "Services": [
            {"Id": "srv-other", "Name": "config-service"},
            {"Id": "srv-1", "Name": "config-service"},
        ]
    }


async def test_resolve_service_picks_the_service_of_the_namespace(services: dict[str, Any]) -> None:
    client = ScriptedClient(
        list_namespaces=[namespaces("config-refresh")],
        list_services=[services],
        get_service=[
            {"Service": {"Id": "srv-other", "NamespaceId": "ns-elsewhere", "HealthCheckCustomConfig": {}}},
            {"Service": {"Id": "srv-1", "NamespaceId": "ns-config-refresh", "HealthCheckCustomConfig": {}}},
        ],
    )
    ref = await CloudMap(client, backoff=NO_WAIT).resolve_service("config-refresh", "config-service")
    assert (ref.service_id, ref.namespace_id) == ("srv-1", "ns-config-refresh")


@pytest.mark.parametrize(
    ("script", "reason", "advice"),
    [
        ({"list_namespaces": [namespaces("other")]}, "NamespaceNotFound", "create it"),
        (
            {"list_namespaces": [namespaces("config-refresh")], "list_services": [{"Services": []}]},
            "ServiceNotFound",
            "create it with HealthCheckCustomConfig",
        ),
        (
            {
                "list_namespaces": [namespaces("config-refresh")],
                "list_services": [{"Services": [{"Id": "srv-1", "Name": "config-service"}]}],
                "get_service": [{"Service": {"Id": "srv-1", "NamespaceId": "ns-config-refresh"}}],
            },
            "HealthCheckCustomConfigMissing",
            "recreate the service with HealthCheckCustomConfig",
        ),
        (
            {"list_namespaces": [client_error("AccessDeniedException")]},
            "AccessDenied",
            "servicediscovery:ListServices",
        ),
    ],
)
async def test_unusable_targets_say_what_to_do(
    script: dict[str, list[Any]], reason: str, advice: str
) -> None:
    with pytest.raises(CloudMapError) as caught:
        await CloudMap(ScriptedClient(**script), backoff=NO_WAIT).resolve_service(
            "config-refresh", "config-service"
        )
    assert caught.value.reason == reason
    assert advice in caught.value.message


async def test_list_instances_joins_attributes_and_health_across_pages() -> None:
    client = ScriptedClient(
        list_instances=[
            {"Instances": [{"Id": "a", "Attributes": {"k": "1"}}], "NextToken": "2"},
            {"Instances": [{"Id": "b", "Attributes": {"k": "2"}}]},
        ],
        get_instances_health_status=[{"Status": {"a": "HEALTHY", "b": "UNHEALTHY"}}],
    )
    listed = await CloudMap(client, backoff=NO_WAIT).list_instances("srv")
    assert {k: (v.attributes, v.healthy) for k, v in listed.items()} == {
        "a": ({"k": "1"}, True),
        "b": ({"k": "2"}, False),
    }


async def test_throttled_calls_are_counted_by_api() -> None:
    def throttled() -> float:
        labels = {"api": "UpdateInstanceCustomHealthStatus", "outcome": "throttled"}
        return REGISTRY.get_sample_value("config_refresh_podsync_cloudmap_calls_total", labels) or 0.0

    before = throttled()
    client = ScriptedClient(
        update_instance_custom_health_status=[
            client_error("ThrottlingException"),
            client_error("Throttling"),
            {},
        ]
    )
    await CloudMap(client, backoff=NO_WAIT).set_health("srv", "p", False)
    assert throttled() - before == 2
