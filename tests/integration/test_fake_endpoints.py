"""The benchmarks' fake refresh endpoints (devstack.services.endpoints): distinct loopback addresses, one
connection each, counted from the endpoints' side."""

from __future__ import annotations

import asyncio
import time

import grpc

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from devstack.services.endpoints import FakeEndpoints


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
