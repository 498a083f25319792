"""The operator's AWS connections break (reset) and come back: the operator keeps running and catches up.

The operator reaches the local AWS endpoint (SQS, Parameter Store, Cloud Map) through
`devstack.network.fault_proxy.FaultProxy`; the test writes to Parameter Store directly. While the proxy resets
every connection, the SQS long poll, the reads and the discoveries fail with `ConnectionClosedError`
(a `BotoCoreError` with no AWS answer); once it passes traffic again, the change written during the
outage is received, read, and rolled out to every instance.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from urllib.parse import urlparse

from devstack.aws.local_aws import LocalAws
from devstack.network.fault_proxy import FaultProxy
from devstack.stack.builder import Stack


def test_the_operator_rides_out_an_outage_of_its_aws_connections(
    local_aws: LocalAws, make_stack: Callable[..., Stack]
) -> None:
    endpoint = urlparse(local_aws.endpoint_url)
    assert endpoint.hostname is not None
    assert endpoint.port is not None
    with FaultProxy((endpoint.hostname, endpoint.port)) as proxy:
        stack = make_stack(3, operator_env={"CONFIG_REFRESH_AWS_ENDPOINT_URL": proxy.url})
        operator = stack.operator
        name = f"{local_aws.prefix}outage/key"
        before = stack.put(name, "before")
        stack.wait_phase(name, before, {"Succeeded"}, timeout=90)

        proxy.set_mode("reset")
        during = stack.put(name, "during")
        stack.wait_for(
            lambda: proxy.accepted("reset") >= 3 and "ReceiveMessage failed" in operator.log_text(),
            timeout=60,
            what="the operator meeting reset connections",
        )
        time.sleep(2)  # the outage lasts: more failed polls, with backoff
        assert operator.returncode is None, operator.log_tail()
        assert stack.values(name) == [("before", before)] * 3

        proxy.set_mode("pass")
        rollout = stack.wait_phase(name, during, {"Succeeded"}, timeout=120)
        assert rollout["status"]["progress"] == "3/3"
        assert stack.values(name) == [("during", during)] * 3
        assert operator.returncode is None, operator.log_tail()
        # A reset mid-response reads as ConnectionClosedError, a reset while connecting as
        # EndpointConnectionError: botocore names whichever the proxy's timing hit.
        assert re.search(r"ConnectionClosedError|EndpointConnectionError", operator.log_text())


RESYNC_ERRORS = 'config_refresh_resync_passes_total{outcome="error"}'
RESYNC_OK = 'config_refresh_resync_passes_total{outcome="ok"}'


def test_a_resync_pass_that_loses_its_connection_is_retried_and_recovers_a_dropped_event(
    local_aws: LocalAws, make_stack: Callable[..., Stack]
) -> None:
    endpoint = urlparse(local_aws.endpoint_url)
    assert endpoint.hostname is not None
    assert endpoint.port is not None
    with FaultProxy((endpoint.hostname, endpoint.port)) as proxy:
        stack = make_stack(
            3,
            resync_seconds=5,
            operator_env={
                "CONFIG_REFRESH_AWS_ENDPOINT_URL": proxy.url,
                "CONFIG_REFRESH_RESYNC_GRACE_SECONDS": "2",
            },
        )
        operator = stack.operator
        stack.wait_for(lambda: stack.metric(RESYNC_OK) >= 1, timeout=60, what="a first resync pass")

        proxy.set_mode("reset")
        events = local_aws.client("events")  # direct, not through the proxy
        events.disable_rule(Name=local_aws.rule_name)
        try:
            name = f"{local_aws.prefix}orders/dropped-during-outage"
            version = stack.put(name, "recovered")
        finally:
            events.enable_rule(Name=local_aws.rule_name)
        stack.wait_for(
            lambda: stack.metric(RESYNC_ERRORS) >= 1, timeout=60, what="a resync pass failing on the network"
        )
        assert operator.returncode is None, operator.log_tail()

        proxy.set_mode("pass")
        stack.wait_for(
            lambda: stack.values(name) == [("recovered", version)] * 3,
            timeout=120,
            what="the change whose event was dropped, on every instance",
        )
        rollout = stack.wait_phase(name, version, {"Succeeded"}, timeout=60)
        assert rollout["spec"]["source"]["trigger"] == "resync"
        assert operator.returncode is None, operator.log_tail()
        # a handled ParameterStoreError naming the call, not an "internal error" with a traceback
        assert re.search(
            rf"GetParametersByPath {re.escape(local_aws.prefix)} failed: "
            r"(ConnectionClosedError|EndpointConnectionError)",
            operator.log_text(),
        )
