"""ConfigService on real processes: authenticated and encrypted when it listens on the network, open only
on loopback (sidecar mode), refused at start when it would be neither, and certificates rotated in place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from configrefresh.v1 import config_service_pb2 as cpb
from configrefresh.v1 import config_service_pb2_grpc as cpb_grpc
from devstack.aws.local_aws import LocalAws
from devstack.fixtures.services import FleetFactory
from devstack.services.fleet import ServiceFleet


def list_code(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[grpc.StatusCode, cpb.ListConfigResponse | None]:
    try:
        answer = cpb_grpc.ConfigServiceStub(channel).ListConfig(
            cpb.ListConfigRequest(prefix=""), timeout=10, metadata=metadata
        )
    except grpc.RpcError as error:
        return error.code(), None
    return grpc.StatusCode.OK, answer


def base_env(local_aws: LocalAws) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONFIG_SERVICE_")}
    env.update(
        {
            "CONFIG_SERVICE_AWS_ENDPOINT_URL": local_aws.endpoint_url,
            "CONFIG_SERVICE_REFRESH_PORT": "0",
            "CONFIG_SERVICE_CONFIG_PORT": "0",
            "CONFIG_SERVICE_INSECURE_REFRESH": "true",
        }
    )
    return env


def test_the_service_refuses_to_serve_the_config_api_on_the_network_without_authentication(
    local_aws: LocalAws,
) -> None:
    env = base_env(local_aws) | {"CONFIG_SERVICE_CONFIG_HOST": "0.0.0.0"}
    result = subprocess.run(
        [sys.executable, "-m", "config_service"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "CONFIG_SERVICE_INSECURE_CONFIG_API" in result.stderr
    assert "--insecure-config-api" in result.stderr
    assert "not a loopback address" in result.stderr


def test_bearer_tokens_without_tls_on_the_network_are_refused_at_start(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("t\n")
    env = base_env(local_aws) | {
        "CONFIG_SERVICE_CONFIG_HOST": "0.0.0.0",
        "CONFIG_SERVICE_CONFIG_TOKEN_FILE": str(token_file),
    }
    result = subprocess.run(
        [sys.executable, "-m", "config_service"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "CONFIG_SERVICE_CONFIG_TLS_CERT_FILE" in result.stderr
    assert "in clear" in result.stderr


def test_an_unauthenticated_list_config_is_refused_and_an_authenticated_one_answers(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    local_aws.client("ssm").put_parameter(
        Name=f"{local_aws.prefix}acme/db/password", Value="s3cret", Type="SecureString"
    )
    fleet: ServiceFleet = service_fleet(1, local_aws=local_aws, config_tls=True, config_token=True)
    instance = fleet[0]
    assert fleet.credentials.ca_file is not None
    assert fleet.credentials.config_token_file is not None
    tls = grpc.ssl_channel_credentials(fleet.credentials.ca_file.read_bytes())
    token = fleet.credentials.config_token_file.read_text().strip()
    with grpc.secure_channel(instance.config_address, tls) as channel:
        code, _ = list_code(channel)
        assert code is grpc.StatusCode.UNAUTHENTICATED
        code, _ = list_code(channel, (("authorization", "Bearer not-the-token"),))
        assert code is grpc.StatusCode.UNAUTHENTICATED
        code, answer = list_code(channel, (("authorization", f"Bearer {token}"),))
        assert code is grpc.StatusCode.OK
        assert answer is not None
        assert [entry.value for entry in answer.entries] == ["s3cret"]
        # Probes need no credential.
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    # Plaintext does not even reach the service: the port speaks TLS only.
    with grpc.insecure_channel(instance.config_address) as channel:
        code, _ = list_code(channel, (("authorization", f"Bearer {token}"),))
        assert code is grpc.StatusCode.UNAVAILABLE
    log = instance.log_text()
    assert "config call refused" in log
    assert token not in log
    assert "s3cret" not in log
    assert 'config_service_auth_refusals_total{code="UNAUTHENTICATED",service="ConfigService"} 2.0' in (
        instance.metrics_text()
    )


def test_loopback_mode_answers_callers_on_the_same_host_without_a_credential(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    local_aws.client("ssm").put_parameter(
        Name=f"{local_aws.prefix}acme/db/password", Value="s3cret", Type="SecureString"
    )
    instance = service_fleet(1, local_aws=local_aws)[0]
    assert instance.host.startswith("127.0.")
    assert instance.host != "127.0.0.1"
    assert [entry.value for entry in instance.list_config().entries] == ["s3cret"]
    assert '"config_auth_modes": ["loopback"]' in instance.log_text()


def test_a_rotated_config_certificate_is_served_without_a_restart(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    fleet: ServiceFleet = service_fleet(1, local_aws=local_aws, config_tls=True, config_token=True)
    instance = fleet[0]
    pid = instance.pid
    assert fleet.credentials.ca_file is not None
    assert fleet.credentials.config_token_file is not None
    old_ca = fleet.credentials.ca_file.read_bytes()
    metadata = (("authorization", f"Bearer {fleet.credentials.config_token_file.read_text().strip()}"),)
    with grpc.secure_channel(instance.config_address, grpc.ssl_channel_credentials(old_ca)) as channel:
        assert list_code(channel, metadata)[0] is grpc.StatusCode.OK

    new_ca = trustme.CA()
    leaf = new_ca.issue_cert(instance.host)
    cert = fleet.workdir / f"server-{instance.index}.pem"
    key = fleet.workdir / f"server-{instance.index}.key"
    # As the kubelet updates a Secret volume: new files beside the old ones, then an atomic rename.
    (fleet.workdir / "staged.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(fleet.workdir / "staged.key"))
    (fleet.workdir / "staged.key").replace(key)
    (fleet.workdir / "staged.pem").replace(cert)

    new_credentials = grpc.ssl_channel_credentials(new_ca.cert_pem.bytes())
    with grpc.secure_channel(instance.config_address, new_credentials) as channel:
        assert list_code(channel, metadata)[0] is grpc.StatusCode.OK
    with grpc.secure_channel(instance.config_address, grpc.ssl_channel_credentials(old_ca)) as channel:
        assert list_code(channel, metadata)[0] is grpc.StatusCode.UNAVAILABLE, "the old CA no longer fits"
    # The refresh port serves the same files and follows too.
    with grpc.secure_channel(instance.refresh_address, new_credentials) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert instance.pid == pid
    assert instance.is_running()
    assert "TLS certificate reloaded" in instance.log_text()
