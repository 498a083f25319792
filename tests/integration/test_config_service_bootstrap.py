"""Bootstrap of a real config-service process against the local Parameter Store."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from configrefresh.v1 import refresh_service_pb2 as pb
from devstack.aws.local_aws import LocalAws
from devstack.fixtures.services import FleetFactory


def put_parameters(local_aws: LocalAws, count: int) -> list[str]:
    ssm = local_aws.client("ssm")
    names = [f"{local_aws.prefix}acme/orders/p{i:02d}" for i in range(count)]
    for index, name in enumerate(names):
        ssm.put_parameter(Name=name, Value=f"value-{index}", Type="String")
    return names


def test_bootstrap_loads_every_page_and_reports_serving_only_after(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    names = put_parameters(local_aws, 25)  # Parameter Store pages hold 10: three pages
    # Throttle the first three bootstrap attempts, so the NOT_SERVING phase lasts seconds.
    local_aws.inject_fault("ssm:GetParametersByPath", "ThrottlingException", count=3)
    local_aws.reset_call_counts()
    fleet = service_fleet(
        1,
        local_aws=local_aws,
        wait=False,
        env={"CONFIG_SERVICE_AWS_MAX_ATTEMPTS": "1", "CONFIG_SERVICE_BOOTSTRAP_BACKOFF_SECONDS": "1"},
    )
    instance = fleet[0]
    statuses: list[str] = []
    read_while_bootstrapping: grpc.StatusCode | None = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = instance.health()
        statuses.append(status)
        if status == "NOT_SERVING" and read_while_bootstrapping is None:
            with pytest.raises(grpc.RpcError) as raised:
                instance.get_config(names[0])
            read_while_bootstrapping = raised.value.code()
        if status == "SERVING":
            break
        time.sleep(0.05)

    assert "NOT_SERVING" in statuses
    assert statuses[-1] == "SERVING"
    assert statuses.index("NOT_SERVING") < statuses.index("SERVING")
    assert read_while_bootstrapping is grpc.StatusCode.UNAVAILABLE
    assert local_aws.call_counts()["ssm:GetParametersByPath"] == 3 + 3, "3 throttled attempts, then 3 pages"
    for index, name in enumerate(names):
        assert instance.get_config(name).value == f"value-{index}"
    listed: list[str] = []
    token = ""
    while True:
        page = instance.list_config(local_aws.prefix, page_size=7, page_token=token)
        listed.extend(entry.name for entry in page.entries)
        token = page.next_page_token
        if not token:
            break
    assert listed == sorted(names)
    assert '"bootstrap complete"' in instance.log_text()


def test_a_restarted_instance_bootstraps_again_on_the_same_ports(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    names = put_parameters(local_aws, 3)
    fleet = service_fleet(1, local_aws=local_aws)
    instance = fleet[0]
    address = instance.refresh_address
    assert instance.kill() != 0
    local_aws.client("ssm").put_parameter(Name=names[0], Value="after-restart", Type="String", Overwrite=True)
    instance.start()
    instance.wait_serving()
    assert instance.refresh_address == address
    entry = instance.get_config(names[0])
    assert (entry.value, entry.version) == ("after-restart", 2)


def test_an_instance_settles_its_collector_once_before_serving_and_still_applies_refreshes(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    names = put_parameters(local_aws, 2)
    instance = service_fleet(1, local_aws=local_aws)[0]  # waits for SERVING, which comes after the settle
    settled = [
        json.loads(line) for line in instance.log_text().splitlines() if '"garbage collector settled"' in line
    ]
    assert len(settled) == 1, instance.log_tail()
    assert settled[0]["frozen_objects"] > 10_000, "the libraries and the loaded cache are frozen"
    assert settled[0]["young_generation_threshold"] == 20_000
    change = pb.RefreshRequest(
        refresh_id="it",
        parameter_name=names[0],
        version=2,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE,
        value="after-settle",
    )
    change.last_modified.FromDatetime(datetime.now(UTC) + timedelta(minutes=2))
    assert instance.refresh(change).result == pb.REFRESH_RESULT_APPLIED
    assert instance.get_config(names[0]).value == "after-settle"
