"""A SecureString value written, bootstrapped, refreshed and read never appears in logs or metrics."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from configrefresh.v1 import refresh_service_pb2 as pb
from devstack.aws.local_aws import LocalAws
from devstack.fixtures.services import FleetFactory


def test_secure_string_values_never_reach_logs_metrics_or_errors(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    ssm = local_aws.client("ssm")
    name = f"{local_aws.prefix}acme/orders/db_password"
    first, pushed, reread = (f"S3CRET-{secrets.token_hex(8)}" for _ in range(3))
    ssm.put_parameter(Name=name, Value=first, Type="SecureString")
    fleet = service_fleet(
        1, local_aws=local_aws, env={"CONFIG_SERVICE_LOG_LEVEL": "DEBUG", "CONFIG_SERVICE_TTL_SECONDS": "1"}
    )
    instance = fleet[0]
    assert instance.get_config(name).value == first
    assert instance.get_config(name).value_type == pb.VALUE_TYPE_SECURE_STRING

    now = datetime.now(UTC)
    push = pb.RefreshRequest(
        parameter_name=name,
        version=2,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE,
        value=pushed,
        value_type=pb.VALUE_TYPE_SECURE_STRING,
    )
    push.last_modified.FromDatetime(now + timedelta(hours=1))
    assert instance.refresh(push).result == pb.REFRESH_RESULT_APPLIED
    assert instance.refresh(push).result == pb.REFRESH_RESULT_STALE
    assert instance.get_config(name).value == pushed

    outside = pb.RefreshRequest(
        parameter_name="/elsewhere/db_password", version=3, operation=pb.OPERATION_UPSERT, value=pushed
    )
    with pytest.raises(grpc.RpcError) as raised:
        instance.refresh(outside)
    assert pushed not in (raised.value.details() or "")

    # Written again in Parameter Store (version 2 there), re-read in INVALIDATE mode: older than held -> kept.
    ssm.put_parameter(Name=name, Value=reread, Type="SecureString", Overwrite=True)
    invalidate = pb.RefreshRequest(
        parameter_name=name,
        version=2,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_INVALIDATE,
        value_type=pb.VALUE_TYPE_SECURE_STRING,
    )
    answer = instance.refresh(invalidate)
    assert pushed not in answer.message
    assert reread not in answer.message
    scrape = instance.metrics_text()
    assert "config_service_refreshes_total" in scrape
    assert instance.stop() == 0

    log = instance.log_text()
    assert '"refresh"' in log, "refreshes are logged"
    assert "TTL re-read" in log or '"bootstrap complete"' in log
    for value in (first, pushed, reread):
        assert value not in log
        assert value not in scrape
