"""RefreshService authentication on real processes: bearer tokens (with rotation), mutual TLS, refusals."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from devstack.aws.local_aws import LocalAws
from devstack.fixtures.services import FleetFactory
from devstack.services.fleet import Instance, ServiceFleet


def code_of_get_state(
    instance: Instance, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.StatusCode:
    stub = pb_grpc.RefreshServiceStub(channel)
    try:
        stub.GetState(pb.GetStateRequest(), timeout=10, metadata=metadata)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_bearer_token_refusals_and_rotation_without_restart(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    fleet: ServiceFleet = service_fleet(1, local_aws=local_aws, auth="token")
    instance = fleet[0]
    pid = instance.pid
    channel = grpc.insecure_channel(instance.refresh_address)
    try:
        old = fleet.call_metadata()
        assert code_of_get_state(instance, channel, old) is grpc.StatusCode.OK
        assert code_of_get_state(instance, channel) is grpc.StatusCode.UNAUTHENTICATED
        wrong = (("authorization", "Bearer not-the-token"),)
        assert code_of_get_state(instance, channel, wrong) is grpc.StatusCode.UNAUTHENTICATED
        refresh = pb.RefreshRequest(
            parameter_name=f"{local_aws.prefix}acme/x", version=1, operation=pb.OPERATION_UPSERT, value="v"
        )
        with pytest.raises(grpc.RpcError) as raised:
            pb_grpc.RefreshServiceStub(channel).Refresh(refresh, timeout=10)
        assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED

        new_token = fleet.rotate_token()
        assert (
            code_of_get_state(instance, channel, (("authorization", f"Bearer {new_token}"),))
            is grpc.StatusCode.OK
        )
        assert code_of_get_state(instance, channel, old) is grpc.StatusCode.UNAUTHENTICATED
        assert instance.pid == pid
        assert instance.is_running()
    finally:
        channel.close()
    # The read API is separate and needs no refresh credential.
    instance.wait_serving()
    log = instance.log_text()
    assert "refresh call refused" in log
    assert new_token not in log
    assert old[0][1].split()[1] not in log


def test_mutual_tls_allows_listed_identities_only(local_aws: LocalAws, service_fleet: FleetFactory) -> None:
    fleet: ServiceFleet = service_fleet(1, local_aws=local_aws, auth="mtls")
    instance = fleet[0]
    credentials = fleet.credentials
    assert credentials.ca_file is not None
    ca = credentials.ca_file.read_bytes()

    allowed = fleet.refresh_credentials()
    assert allowed is not None
    with grpc.secure_channel(instance.refresh_address, allowed) as channel:
        assert code_of_get_state(instance, channel) is grpc.StatusCode.OK

    cert, key = fleet.issue_client_cert("someone-else")
    other = grpc.ssl_channel_credentials(ca, key.read_bytes(), cert.read_bytes())
    with grpc.secure_channel(instance.refresh_address, other) as channel:
        assert code_of_get_state(instance, channel) is grpc.StatusCode.PERMISSION_DENIED

    # Without a client certificate the TLS handshake itself fails: the client sees UNAVAILABLE.
    anonymous = grpc.ssl_channel_credentials(ca)
    with grpc.secure_channel(instance.refresh_address, anonymous) as channel:
        assert code_of_get_state(instance, channel) is grpc.StatusCode.UNAVAILABLE
    assert "client certificate identity is not allowed" in instance.log_text()


def test_the_service_refuses_to_start_without_refresh_authentication(local_aws: LocalAws) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONFIG_SERVICE_")}
    env.update(
        {"CONFIG_SERVICE_AWS_ENDPOINT_URL": local_aws.endpoint_url, "CONFIG_SERVICE_REFRESH_PORT": "0"}
    )
    result = subprocess.run(
        [sys.executable, "-m", "config_service"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "CONFIG_SERVICE_INSECURE_REFRESH" in result.stderr
    assert "--insecure-refresh" in result.stderr


def test_insecure_refresh_is_allowed_with_a_warning(local_aws: LocalAws, service_fleet: FleetFactory) -> None:
    instance = service_fleet(1, local_aws=local_aws)[0]
    assert instance.get_state().instance_id == instance.instance_id
    warnings = [
        line for line in instance.log_text().splitlines() if '"WARNING"' in line and "insecure" in line
    ]
    assert warnings


def test_bearer_token_over_tls(local_aws: LocalAws, service_fleet: FleetFactory) -> None:
    fleet: ServiceFleet = service_fleet(1, local_aws=local_aws, auth="token", tls=True)
    instance = fleet[0]
    assert instance.get_state().instance_id == instance.instance_id  # TLS channel + token
    credentials = fleet.refresh_credentials()
    assert credentials is not None
    with grpc.secure_channel(instance.refresh_address, credentials) as channel:
        assert code_of_get_state(instance, channel) is grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(instance.refresh_address) as channel:
        assert code_of_get_state(instance, channel, fleet.call_metadata()) is grpc.StatusCode.UNAVAILABLE
