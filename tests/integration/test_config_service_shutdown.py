"""SIGTERM with calls in flight: they complete, health goes NOT_SERVING, and the process exits 0."""

from __future__ import annotations

import time
from concurrent.futures import Future

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from devstack.aws.local_aws import LocalAws
from devstack.fixtures.services import FleetFactory


def in_flight(metrics_text: str) -> int:
    """The instance's own count of Refresh calls it accepted and has not answered."""
    for line in metrics_text.splitlines():
        if line.startswith("config_service_refreshes_in_flight "):
            return int(float(line.split()[1]))
    raise AssertionError("config_service_refreshes_in_flight is not exported")


def test_sigterm_lets_in_flight_calls_complete_and_exits_zero(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    ssm = local_aws.client("ssm")
    name = f"{local_aws.prefix}acme/orders/limit"
    ssm.put_parameter(Name=name, Value="v1", Type="String")
    instance = service_fleet(
        1,
        local_aws=local_aws,
        env={"CONFIG_SERVICE_AWS_MAX_ATTEMPTS": "6", "CONFIG_SERVICE_GRACE_SECONDS": "60"},
    )[0]
    ssm.put_parameter(Name=name, Value="v2", Type="String", Overwrite=True)
    # Five throttled attempts keep the (single-flight) INVALIDATE re-read in flight for seconds, long
    # enough for all eight calls to arrive even on a busy machine: botocore backs off 1 + 2 + 4 + 8 + 16 s
    # at most, 15.5 s on average.
    local_aws.inject_fault("ssm:GetParameter", "ThrottlingException", count=5)
    local_aws.reset_call_counts()
    stub = pb_grpc.RefreshServiceStub(instance.refresh_channel())
    change = pb.RefreshRequest(
        parameter_name=name, version=2, operation=pb.OPERATION_UPSERT, payload_mode=pb.PAYLOAD_MODE_INVALIDATE
    )
    futures: list[Future[pb.RefreshResponse]] = [stub.Refresh.future(change, timeout=90) for _ in range(8)]
    # SIGTERM only once all eight are inside the server (on a busy machine a call can still be in transit
    # long after the first one reached Parameter Store) and the re-read they share has begun.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        inside = in_flight(instance.metrics_text())
        if inside == len(futures) and local_aws.call_counts().get("ssm:GetParameter", 0) >= 1:
            break
        assert not any(future.done() for future in futures), [f.result() for f in futures if f.done()]
        time.sleep(0.02)
    assert in_flight(instance.metrics_text()) == len(futures), "all calls must be in flight at SIGTERM"
    assert not any(future.done() for future in futures), "the calls must still be in flight at SIGTERM"

    instance.terminate()
    answers = [future.result() for future in futures]
    exit_code = instance.wait(90)

    results = sorted(pb.RefreshResult.Name(answer.result) for answer in answers)
    assert results == ["REFRESH_RESULT_APPLIED"] + ["REFRESH_RESULT_STALE"] * 7
    assert {answer.applied_version for answer in answers} == {2}
    assert exit_code == 0
    log = instance.log_text()
    assert log.index('"signal received"') < log.index('"refresh"') < log.index('"stopped"')


def test_health_reports_not_serving_once_shutdown_begins(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    name = f"{local_aws.prefix}acme/slow"
    local_aws.client("ssm").put_parameter(Name=name, Value="v1", Type="String")
    instance = service_fleet(
        1,
        local_aws=local_aws,
        env={"CONFIG_SERVICE_GRACE_SECONDS": "30", "CONFIG_SERVICE_DRAIN_SECONDS": "2"},
    )[0]
    local_aws.client("ssm").put_parameter(Name=name, Value="v2", Type="String", Overwrite=True)
    local_aws.inject_fault("ssm:GetParameter", "ThrottlingException", count=4)
    stub = pb_grpc.RefreshServiceStub(instance.refresh_channel())
    pending = stub.Refresh.future(
        pb.RefreshRequest(
            parameter_name=name,
            version=2,
            operation=pb.OPERATION_UPSERT,
            payload_mode=pb.PAYLOAD_MODE_INVALIDATE,
        ),
        timeout=60,
    )
    while local_aws.call_counts().get("ssm:GetParameter", 0) < 1:
        time.sleep(0.02)
    assert instance.health() == "SERVING"
    instance.terminate()
    seen: list[str] = []
    while not pending.done():
        seen.append(instance.health(timeout=1.0))
        time.sleep(0.05)
    assert pending.result().result == pb.REFRESH_RESULT_APPLIED
    assert "NOT_SERVING" in seen, "during the drain period health says NOT_SERVING"
    assert "SERVING" not in seen[1:], "never SERVING again once shutdown began"
    assert instance.wait(60) == 0
