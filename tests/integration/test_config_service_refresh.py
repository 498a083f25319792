"""Pushed refreshes to real config-service processes: each payload mode, deletes, and bad requests."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from devstack.aws.local_aws import LocalAws
from devstack.fixtures.services import FleetFactory
from devstack.services.fleet import Instance


def request(name: str, version: int, **fields: Any) -> pb.RefreshRequest:
    message = pb.RefreshRequest(
        refresh_id="it", parameter_name=name, version=version, operation=pb.OPERATION_UPSERT, **fields
    )
    if "last_modified" not in fields and version > 0:
        message.last_modified.FromDatetime(datetime.now(UTC) + timedelta(minutes=version))
    return message


def test_value_mode_applies_on_every_instance_and_answers_stale_after(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    name = f"{local_aws.prefix}acme/orders/db_url"
    local_aws.client("ssm").put_parameter(Name=name, Value="postgres://old", Type="String")
    fleet = service_fleet(2, local_aws=local_aws)
    local_aws.reset_call_counts()
    change = request(name, 2, payload_mode=pb.PAYLOAD_MODE_VALUE, value="postgres://new")
    for instance in fleet:
        answer = instance.refresh(change)
        assert (answer.result, answer.applied_version, answer.instance_id) == (
            pb.REFRESH_RESULT_APPLIED,
            2,
            instance.instance_id,
        )
        entry = instance.get_config(name)
        assert (entry.value, entry.version) == ("postgres://new", 2)
        again = instance.refresh(change)
        assert (again.result, again.applied_version) == (pb.REFRESH_RESULT_STALE, 2)
    assert not any(key.startswith("ssm:") for key in local_aws.call_counts()), "VALUE mode reads nothing"


def test_invalidate_mode_rereads_once_for_refreshes_that_arrive_together(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    ssm = local_aws.client("ssm")
    name = f"{local_aws.prefix}acme/orders/limit"
    ssm.put_parameter(Name=name, Value="10", Type="String")
    fleet = service_fleet(1, local_aws=local_aws)
    instance = fleet[0]
    ssm.put_parameter(Name=name, Value="20", Type="String", Overwrite=True)
    # Two throttled attempts keep the one read in flight while all the refreshes arrive.
    local_aws.inject_fault("ssm:GetParameter", "ThrottlingException", count=2)
    local_aws.reset_call_counts()
    stub = pb_grpc.RefreshServiceStub(instance.refresh_channel())
    change = request(name, 2, payload_mode=pb.PAYLOAD_MODE_INVALIDATE)
    futures: list[Future[pb.RefreshResponse]] = [stub.Refresh.future(change, timeout=60) for _ in range(10)]
    answers = [future.result() for future in futures]

    results = sorted(pb.RefreshResult.Name(answer.result) for answer in answers)
    assert results == ["REFRESH_RESULT_APPLIED"] + ["REFRESH_RESULT_STALE"] * 9
    assert local_aws.call_counts().get("ssm:GetParameter") == 3, "two throttled attempts, then one read"
    entry = instance.get_config(name)
    assert (entry.value, entry.version) == ("20", 2)


def test_invalidate_mode_rejects_when_parameter_store_is_behind(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    name = f"{local_aws.prefix}acme/orders/limit"
    local_aws.client("ssm").put_parameter(Name=name, Value="10", Type="String")
    instance = service_fleet(1, local_aws=local_aws)[0]
    answer = instance.refresh(request(name, 5, payload_mode=pb.PAYLOAD_MODE_INVALIDATE))
    assert answer.result == pb.REFRESH_RESULT_REJECTED
    assert answer.applied_version == 1
    assert "version 1" in answer.message
    assert instance.get_config(name).value == "10"


def test_a_delete_leaves_a_tombstone_that_a_late_upsert_cannot_resurrect(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    ssm = local_aws.client("ssm")
    name = f"{local_aws.prefix}acme/orders/flag"
    ssm.put_parameter(Name=name, Value="on", Type="String")
    instance = service_fleet(1, local_aws=local_aws)[0]
    modified = instance.get_config(name).last_modified.ToDatetime(tzinfo=UTC)
    ssm.delete_parameter(Name=name)
    delete = pb.RefreshRequest(parameter_name=name, version=1, operation=pb.OPERATION_DELETE)
    delete.last_modified.FromDatetime(modified + timedelta(seconds=5))
    assert instance.refresh(delete).result == pb.REFRESH_RESULT_APPLIED
    with pytest.raises(grpc.RpcError) as raised:
        instance.get_config(name)
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    late = request(name, 1, value="on", last_modified=delete.last_modified)
    late.last_modified.FromDatetime(modified)
    assert instance.refresh(late).result == pb.REFRESH_RESULT_STALE
    state = instance.get_state(name)
    assert [(p.name, p.version, p.deleted) for p in state.parameters] == [(name, 1, True)]
    assert state.instance_id == instance.instance_id


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"parameter_name": "", "version": 1, "value": "v"}, "parameter_name"),
        ({"parameter_name": "/elsewhere/x", "version": 1, "value": "v"}, "parameter_name"),
        ({"version": 0, "value": "v"}, "version"),
        ({"version": 1}, "value"),
    ],
)
def test_a_bad_refresh_is_invalid_argument_naming_the_field(
    local_aws: LocalAws, service_fleet: FleetFactory, fields: dict[str, Any], field: str
) -> None:
    instance: Instance = service_fleet(1, local_aws=local_aws)[0]
    message = pb.RefreshRequest(parameter_name=f"{local_aws.prefix}acme/x", operation=pb.OPERATION_UPSERT)
    for key, value in fields.items():
        setattr(message, key, value)
    with pytest.raises(grpc.RpcError) as raised:
        instance.refresh(message)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(f"{field}:")
