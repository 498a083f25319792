"""Fault 7: Parameter Store throttles GetParameter: the operator backs off, retries, and loses nothing.

The local AWS endpoint answers the next N GetParameter calls with ThrottlingException (moto's fault
injection). More throttles than one boto3 call retries make the message come back after its visibility
timeout, and the change still lands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.reliability.checks import VersionWatch, assert_converged

THROTTLES = 12  # botocore gives up after 5 attempts: two calls fail outright, the third succeeds


def test_throttled_get_parameter_is_retried_until_every_change_lands(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(10, visibility_timeout=3)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    names = [f"{stack.local_aws.prefix}throttle/key-{index}" for index in range(5)]
    stack.local_aws.reset_call_counts()
    stack.local_aws.inject_fault("ssm:GetParameter", error="ThrottlingException", count=THROTTLES)
    for name in names:
        stack.put(name, f"{name}-v1")
    assert_converged(stack.local_aws, stack.fleet, names, timeout=120)
    assert stack.local_aws.pending_faults() == []
    calls = stack.local_aws.call_counts()["ssm:GetParameter"]
    assert calls >= THROTTLES + len(names), calls
    errors = stack.metric('config_refresh_parameter_store_calls_total{api="GetParameter",outcome="error"}')
    for name in names:
        assert stack.wait_phase(name, 1, {"Succeeded"})["status"]["progress"] == "10/10"
    stack.wait_for(lambda: stack.queue_depth() == (0, 0), timeout=60, what="every message deleted")
    watch.assert_monotonic()
    print(
        f"\nthrottling: {THROTTLES} ThrottlingExceptions injected, {calls} GetParameter calls in all, "
        f"{errors:.0f} calls failed after botocore's retries, {len(names)}/{len(names)} changes applied"
    )
