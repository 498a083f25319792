"""Read timeouts and broken connections (botocore errors that carry no AWS answer) on every AWS path.

A `BotoCoreError` such as `ReadTimeoutError` has ``response = None`` (or no ``response`` at all): code
that reads an error code from it must not raise while handling it. Each path here must retry (or turn the
error into its own, handled error) and recover once the network answers; real sockets that misbehave are
in tests/integration/test_config_service_network_faults.py.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from config_service.bootstrap import bootstrap
from config_service.cache import ConfigCache, Entry, ValueType, utcnow
from config_service.parameter_store import error_code, is_throttling
from config_service.registration import CloudMapRegistration
from refresh_operator.backoff import Backoff
from refresh_operator.cloudmap import CloudMapError
from refresh_operator.cloudmap import Registrar as CloudMap
from refresh_operator.parameter_store import ParameterStoreError, list_parameters, read_parameter

URL = "http://127.0.0.1:1/"


def network_errors() -> list[BotoCoreError]:
    return [
        ReadTimeoutError(endpoint_url=URL),
        ConnectionClosedError(endpoint_url=URL),
        EndpointConnectionError(endpoint_url=URL),
    ]


@pytest.mark.parametrize("error", network_errors(), ids=lambda error: type(error).__name__)
def test_an_error_without_an_answer_has_no_code_and_is_not_throttling(error: BotoCoreError) -> None:
    assert error_code(error) is None
    assert not is_throttling(error)


def test_a_client_error_keeps_its_code() -> None:
    throttled = ClientError({"Error": {"Code": "ThrottlingException"}}, "GetParametersByPath")
    assert error_code(throttled) == "ThrottlingException"
    assert is_throttling(throttled)


class FlakyStore:
    """get_parameters_by_path raises each of `errors` once, then answers."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def get_parameters_by_path(self, prefix: str) -> list[Entry]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return [Entry(f"{prefix}key", "value", ValueType.STRING, 3, None, utcnow())]


async def test_the_bootstrap_retries_read_timeouts_and_connection_errors_until_it_loads() -> None:
    cache = ConfigCache()
    store = FlakyStore([*network_errors(), ClientError({"Error": {"Code": "Throttling"}}, "Op")])
    report = await bootstrap(
        cache=cache,
        store=store,  # type: ignore[arg-type]
        prefixes=["/app/"],
        backoff_seconds=0.001,
        backoff_max_seconds=0.002,
    )
    assert report.attempts == 5
    assert store.calls == 5
    held = cache.get("/app/key")
    assert held is not None
    assert held.version == 3


class FlakyClient:
    """A boto3 stand-in: each method raises the queued errors, then returns `answer`."""

    def __init__(self, errors: list[BaseException], answer: dict[str, Any]) -> None:
        self.errors = list(errors)
        self.answer = answer
        self.calls = 0

    def _call(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.answer

    register_instance = _call
    get_parameter = _call
    get_parameters_by_path = _call
    get_operation = _call


async def test_self_registration_retries_network_errors_until_cloud_map_accepts() -> None:
    client = FlakyClient(network_errors(), {"OperationId": "op"})
    registration = CloudMapRegistration(
        service_id="srv",
        instance_id="i-1",
        ip="127.0.0.1",
        port=50051,
        attributes={},
        client=client,
        backoff_seconds=0.001,
        backoff_max_seconds=0.002,
    )
    await registration.register()
    assert client.calls == len(network_errors()) + 1


@pytest.mark.parametrize("error", network_errors(), ids=lambda error: type(error).__name__)
def test_the_operators_reads_turn_network_errors_into_parameter_store_errors(error: BotoCoreError) -> None:
    """The consumer and the resync handle ParameterStoreError: the message stays, the pass is retried."""
    with pytest.raises(ParameterStoreError, match=type(error).__name__):
        read_parameter(
            FlakyClient([error], {}),
            name="/app/key",
            with_value=True,
            deleted_at=datetime.datetime.now(datetime.UTC),
        )
    with pytest.raises(ParameterStoreError, match=type(error).__name__):
        list_parameters(FlakyClient([error], {}), prefix="/app/", with_value=False)


def test_the_operators_read_succeeds_once_the_network_answers() -> None:
    answer = {
        "Parameter": {
            "Name": "/app/key",
            "Version": 4,
            "Value": "v",
            "Type": "String",
            "LastModifiedDate": datetime.datetime.now(datetime.UTC),
        }
    }
    client = FlakyClient([ReadTimeoutError(endpoint_url=URL)], answer)
    with pytest.raises(ParameterStoreError):
        read_parameter(
            client, name="/app/key", with_value=True, deleted_at=datetime.datetime.now(datetime.UTC)
        )
    snapshot = read_parameter(
        client, name="/app/key", with_value=True, deleted_at=datetime.datetime.now(datetime.UTC)
    )
    assert snapshot.version == 4


NO_WAIT = Backoff(base_seconds=0.0, max_seconds=0.0)


async def test_podsync_retries_network_errors_then_registers() -> None:
    client = FlakyClient(network_errors(), {"OperationId": "op"})
    client.get_operation = lambda **_: {"Operation": {"Id": "op", "Status": "SUCCESS"}}  # type: ignore[method-assign]
    await CloudMap(client, backoff=NO_WAIT, max_retries=5).register("srv", "pod-0", {}, healthy=True)
    assert client.calls == len(network_errors()) + 1


async def test_podsync_reports_cloud_map_unreachable_when_the_network_never_answers() -> None:
    client = FlakyClient([ReadTimeoutError(endpoint_url=URL)] * 4, {"OperationId": "op"})
    with pytest.raises(CloudMapError) as caught:
        await CloudMap(client, backoff=NO_WAIT, max_retries=2).register("srv", "pod-0", {}, healthy=True)
    assert caught.value.reason == "CloudMapUnreachable"
    assert client.calls == 3
