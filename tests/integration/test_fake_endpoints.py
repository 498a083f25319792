"""The benchmarks' fake refresh endpoints (devstack.services.endpoints): distinct loopback addresses, one
connection each, counted from the endpoints' side; TLS and config-service's token check when asked for."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
import trustme

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from devstack.services.endpoints import FakeEndpoints, Kind


def request(version: int) -> pb.RefreshRequest:
    return pb.RefreshRequest(
        refresh_id=f"test-v{version}",
        parameter_name="/config-service/test/flag",
        version=version,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE,
        value="on",
        value_type=pb.VALUE_TYPE_STRING,
    )


async def refresh_all(
    addresses: list[str], version: int, *, then_count: FakeEndpoints
) -> tuple[list[int], int]:
    """One Refresh per address, each over its own channel; how many endpoints hold a connection then."""
    channels = [grpc.aio.insecure_channel(address) for address in addresses]
    try:
        answers = await asyncio.gather(
            *(
                pb_grpc.RefreshServiceStub(channel).Refresh(request(version), timeout=60)
                for channel in channels
            )
        )
        return [answer.result for answer in answers], then_count.connected()
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


def test_minimal_endpoints_answer_at_distinct_addresses_each_over_its_own_connection() -> None:
    endpoints = FakeEndpoints(
        1500, kind="minimal", processes=1, attributes=lambda index: {"tenant": f"t{index // 10}"}
    )
    try:
        hosts = {endpoint.host for endpoint in endpoints}
        assert len(hosts) == 1500  # distinct IP addresses, not one address with many ports
        assert all(host.startswith("127.2.") for host in hosts)
        assert endpoints[0].attributes == {"tenant": "t0"}
        assert endpoints[1499].attributes == {"tenant": "t149"}
        assert endpoints.connected() == 0
        results, held = asyncio.run(refresh_all([e.address for e in endpoints], 7, then_count=endpoints))
        assert results == [pb.REFRESH_RESULT_APPLIED] * 1500  # two servers in the process, no call lost
        assert held == 1500
        deadline = time.monotonic() + 30
        while endpoints.connected() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert endpoints.connected() == 0  # the count follows the connections closed
    finally:
        endpoints.close()


def test_embedded_endpoints_run_config_services_refresh_path() -> None:
    endpoints = FakeEndpoints(4, kind="embedded", processes=2)
    try:
        addresses = [endpoint.address for endpoint in endpoints]
        first, _ = asyncio.run(refresh_all(addresses, 3, then_count=endpoints))
        assert first == [pb.REFRESH_RESULT_APPLIED] * 4
        again, _ = asyncio.run(refresh_all(addresses, 2, then_count=endpoints))
        assert again == [pb.REFRESH_RESULT_STALE] * 4  # each endpoint keeps its own cache's version
    finally:
        endpoints.close()


async def refresh_secured(address: str, ca: bytes, token: str | None) -> int:
    """One Refresh over TLS (the certificate names config-service.bench.svc), with `token` if given."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    options = [("grpc.ssl_target_name_override", "config-service.bench.svc")]
    async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
        answer = await pb_grpc.RefreshServiceStub(channel).Refresh(request(5), timeout=60, metadata=metadata)
        return int(answer.result)


@pytest.mark.parametrize("kind", ["embedded", "minimal"])
def test_secured_endpoints_serve_tls_and_refuse_a_call_without_the_token(tmp_path: Path, kind: Kind) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("config-service.bench.svc")
    (tmp_path / "server.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    (tmp_path / "token").write_text("s3cret-token\n")
    endpoints = FakeEndpoints(2, kind=kind, processes=1, secure_dir=tmp_path)
    try:
        address = endpoints[1].address
        assert asyncio.run(refresh_secured(address, ca.cert_pem.bytes(), "s3cret-token")) == (
            pb.REFRESH_RESULT_APPLIED
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            asyncio.run(refresh_secured(address, ca.cert_pem.bytes(), "wrong"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError):  # plaintext is not served
            asyncio.run(refresh_all([address], 6, then_count=endpoints))
    finally:
        endpoints.close()
