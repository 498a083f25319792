"""Discovery failures become a DiscoveryError that names the Cloud Map service and the cause.

A real boto3 client aimed at a port where nothing listens: the same error a network failure gives. The
happy paths run against the local AWS stack in tests/integration/test_fanout_discovery.py.
"""

from __future__ import annotations

import socket

import boto3
import pytest
from botocore.config import Config

from refresh_operator.fanout import DiscoveryError, discover_instances


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_cloud_map_raises_a_discovery_error_naming_the_service() -> None:
    client = boto3.client(
        "servicediscovery",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(inject_host_prefix=False, retries={"max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(DiscoveryError, match=r"Cloud Map service prod/orders: EndpointConnectionError"):
        await discover_instances(client, namespace="prod", service="orders", query_parameters={})
