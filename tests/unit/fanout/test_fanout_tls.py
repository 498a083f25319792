"""TLS and mutual TLS from the operator's mounted files, against an in-process grpc.aio server.

Instances are dialled by IP, so the server name to verify comes from the route (``serverName``); the
client certificate is the operator's own. A missing file fails the rollout with a reason that names it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from refresh_operator.fanout import (
    BreakerRegistry,
    ChannelPool,
    FanOut,
    RefreshPolicy,
    Result,
    Target,
    TlsSettings,
)

SERVER_NAME = "config-service.refresh.internal"
REQUEST = pb.RefreshRequest(refresh_id="r", parameter_name="/config-service/a", version=2)


class Servicer(pb_grpc.RefreshServiceServicer):
    def __init__(self) -> None:
        self.peers: list[str] = []

    async def Refresh(self, request: pb.RefreshRequest, context: Any) -> pb.RefreshResponse:
        identity = context.auth_context().get("x509_common_name", [b""])
        self.peers.append(identity[0].decode())
        return pb.RefreshResponse(result=pb.REFRESH_RESULT_APPLIED, applied_version=request.version)

    async def GetState(self, request: pb.GetStateRequest, context: Any) -> pb.GetStateResponse:
        return pb.GetStateResponse()


@dataclass
class TlsServer:
    target: Target
    servicer: Servicer
    ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    ca = trustme.CA()
    server_cert = ca.issue_cert(SERVER_NAME)
    client_cert = ca.issue_cert("config-refresh-operator", common_name="config-refresh-operator")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    client_cert.private_key_pem.write_to_path(str(key_file))
    credentials = grpc.ssl_server_credentials(
        [(server_cert.private_key_pem.bytes(), b"".join(p.bytes() for p in server_cert.cert_chain_pems))],
        root_certificates=ca.cert_pem.bytes(),
        require_client_auth=True,
    )
    servicer = Servicer()
    server = grpc.aio.server()
    pb_grpc.add_RefreshServiceServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield TlsServer(
            target=Target(instance_id="i-tls", address=f"127.0.0.1:{port}", attributes={}),
            servicer=servicer,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
        )
    finally:
        await server.stop(grace=None)


@pytest.fixture
async def fanout() -> AsyncIterator[FanOut]:
    channels = ChannelPool()
    yield FanOut(channels=channels, breakers=BreakerRegistry())
    await channels.aclose()


async def test_mutual_tls_reaches_the_instance_with_the_operator_identity(
    tls_server: TlsServer, fanout: FanOut
) -> None:
    tls = TlsSettings(
        ca_file=str(tls_server.ca_file),
        cert_file=str(tls_server.cert_file),
        key_file=str(tls_server.key_file),
        server_name=SERVER_NAME,
    )
    [outcome] = await fanout.run(
        targets=[tls_server.target], request=REQUEST, policy=RefreshPolicy(tls=tls, max_attempts=1)
    )
    assert (outcome.result, outcome.version, outcome.error) == (Result.APPLIED, 2, None)
    assert tls_server.servicer.peers == ["config-refresh-operator"]


async def test_without_a_client_certificate_the_handshake_fails_as_unavailable(
    tls_server: TlsServer, fanout: FanOut
) -> None:
    tls = TlsSettings(ca_file=str(tls_server.ca_file), server_name=SERVER_NAME)
    policy = RefreshPolicy(tls=tls, max_attempts=1, timeout_seconds=2.0)
    [outcome] = await fanout.run(targets=[tls_server.target], request=REQUEST, policy=policy)
    assert outcome.result is Result.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("UNAVAILABLE")
    assert tls_server.servicer.peers == []


async def test_a_missing_tls_file_fails_every_target_naming_the_file(
    tls_server: TlsServer, fanout: FanOut, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    policy = RefreshPolicy(tls=TlsSettings(ca_file=str(missing)))
    [outcome] = await fanout.run(targets=[tls_server.target], request=REQUEST, policy=policy)
    assert outcome.result is Result.FAILED
    assert outcome.attempts == 0
    assert outcome.error is not None
    assert str(missing) in outcome.error
