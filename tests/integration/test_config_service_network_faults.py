"""Read timeouts and broken connections between a real config-service process and Parameter Store.

The instance talks to the local AWS endpoint through `devstack.network.fault_proxy.FaultProxy`, which a test
switches to "blackhole" (accepts, never answers: botocore's `ReadTimeoutError`) or "reset" (connection
reset: `ConnectionClosedError`) and back. Neither may end the process: the bootstrap keeps retrying until
Parameter Store answers, then reports SERVING; the TTL re-read keeps running and picks the value up once
the network is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest

from devstack.aws.local_aws import LocalAws
from devstack.fixtures.services import FleetFactory
from devstack.network.fault_proxy import FaultProxy, Mode

# Short timeouts so each black-holed attempt ends in about a second; one botocore attempt per call, so
# every failure reaches the service's own retry loop (the code path that crashed on a read timeout).
FAST_FAILING = {
    "CONFIG_SERVICE_AWS_READ_TIMEOUT_SECONDS": "1",
    "CONFIG_SERVICE_AWS_MAX_ATTEMPTS": "1",
    "CONFIG_SERVICE_BOOTSTRAP_BACKOFF_SECONDS": "0.2",
    "CONFIG_SERVICE_BOOTSTRAP_BACKOFF_MAX_SECONDS": "1",
}


@pytest.fixture
def proxy(local_aws: LocalAws) -> Iterator[FaultProxy]:
    endpoint = urlparse(local_aws.endpoint_url)
    assert endpoint.hostname is not None
    assert endpoint.port is not None
    with FaultProxy((endpoint.hostname, endpoint.port)) as running:
        yield running


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("fault", "error"), [("blackhole", "ReadTimeoutError"), ("reset", "ConnectionClosedError")]
)
def test_bootstrap_survives_a_network_fault_and_serves_once_it_clears(
    local_aws: LocalAws, service_fleet: FleetFactory, proxy: FaultProxy, fault: Mode, error: str
) -> None:
    name = f"{local_aws.prefix}acme/orders/db_url"
    local_aws.client("ssm").put_parameter(Name=name, Value="postgres://one", Type="String")
    proxy.set_mode(fault)
    instance = service_fleet(
        1,
        local_aws=local_aws,
        wait=False,
        env={**FAST_FAILING, "CONFIG_SERVICE_AWS_ENDPOINT_URL": proxy.url},
    )[0]
    # Several failed attempts, each logged: the log line that used to raise is written, and the process
    # is still up and not serving.
    wait_until(
        lambda: (
            instance.log_text().count('"bootstrap attempt failed; retrying"') >= 3
            or not instance.is_running()
        ),
        timeout=60,
        what="three failed bootstrap attempts",
    )
    assert instance.is_running(), instance.log_tail()
    assert f'"error": "{error}"' in instance.log_text(), instance.log_tail()
    assert instance.health() == "NOT_SERVING"
    assert proxy.accepted(fault) >= 3

    proxy.set_mode("pass")
    instance.wait_serving(timeout=60)
    assert instance.get_config(name).value == "postgres://one"
    assert instance.is_running()


@pytest.mark.parametrize("fault", ["blackhole", "reset"])
def test_the_ttl_reread_survives_a_network_fault_and_catches_up_once_it_clears(
    local_aws: LocalAws, service_fleet: FleetFactory, proxy: FaultProxy, fault: Mode
) -> None:
    ssm = local_aws.client("ssm")
    name = f"{local_aws.prefix}acme/orders/timeout"
    ssm.put_parameter(Name=name, Value="1s", Type="String")
    instance = service_fleet(
        1,
        local_aws=local_aws,
        env={
            **FAST_FAILING,
            "CONFIG_SERVICE_AWS_ENDPOINT_URL": proxy.url,
            "CONFIG_SERVICE_TTL_SECONDS": "1",
            "CONFIG_SERVICE_TTL_JITTER": "0",
        },
    )[0]
    proxy.set_mode(fault)
    ssm.put_parameter(Name=name, Value="2s", Type="String", Overwrite=True)  # no refresh is pushed
    wait_until(
        lambda: (
            instance.log_text().count('"TTL re-read failed; will retry"') >= 2 or not instance.is_running()
        ),
        timeout=60,
        what="two failed TTL rounds",
    )
    assert instance.is_running(), instance.log_tail()
    assert instance.health() == "SERVING"
    assert instance.get_config(name).value == "1s"  # the old entry is served while Parameter Store is away

    proxy.set_mode("pass")
    wait_until(lambda: instance.get_config(name).value == "2s", timeout=60, what="the TTL re-read of v2")
    assert instance.get_config(name).version == 2


def test_self_registration_retries_until_cloud_map_answers(
    local_aws: LocalAws, service_fleet: FleetFactory, proxy: FaultProxy
) -> None:
    # The network fails first (the bootstrap waits it out), then Cloud Map itself fails the first two
    # registrations: the instance keeps serving and registers on the third.
    proxy.set_mode("reset")
    local_aws.inject_fault("servicediscovery:RegisterInstance", error="ServiceUnavailable", count=2)
    instance = service_fleet(
        1,
        local_aws=local_aws,
        wait=False,
        env={
            **FAST_FAILING,
            "CONFIG_SERVICE_AWS_ENDPOINT_URL": proxy.url,
            "CONFIG_SERVICE_CLOUDMAP_SERVICE_ID": local_aws.service_id,
        },
    )[0]
    wait_until(lambda: proxy.accepted("reset") >= 3 or not instance.is_running(), timeout=60, what="3 resets")
    assert instance.is_running(), instance.log_tail()
    proxy.set_mode("pass")
    discovery = local_aws.client("servicediscovery")
    wait_until(
        lambda: any(
            item["Id"] == instance.instance_id
            for item in discovery.list_instances(ServiceId=local_aws.service_id)["Instances"]
        ),
        timeout=60,
        what="the instance registered in Cloud Map",
    )
    instance.wait_serving(timeout=30)
    assert local_aws.pending_faults() == []
    assert '"Cloud Map registration failed; retrying"' in instance.log_text()
    assert instance.is_running()
