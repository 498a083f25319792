"""Fault 7: Parameter Store throttles GetParameter beyond botocore's retries: the message comes back.

The local AWS endpoint answers the next N GetParameter calls with ThrottlingException (fault injection in
front of moto). N is every attempt botocore makes for the first read of every key, so each key's first
read fails after its retries, the operator leaves the message on the queue, and the change lands only
when SQS delivers that same message again after its visibility ran out: the redelivery path, for every
key, not only botocore's in-call retries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.reliability.checks import VersionWatch, assert_converged

KEYS = 5
ATTEMPTS = 3  # botocore's total_max_attempts for the operator's clients (CONFIG_REFRESH_AWS_MAX_ATTEMPTS)
THROTTLES = KEYS * ATTEMPTS  # every attempt of every key's first read
OPERATOR_ENV = {
    "CONFIG_REFRESH_AWS_MAX_ATTEMPTS": str(ATTEMPTS),
    # a failed message is hidden for what is left of its last extension: come back within seconds
    "CONFIG_REFRESH_VISIBILITY_EXTENSION_SECONDS": "6",
}
FAILED_READ = re.compile(r"GetParameter (\S+) failed: ThrottlingException; the message stays on the queue")


def test_a_read_throttled_beyond_botocores_retries_is_retried_by_redelivery_until_every_change_lands(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(10, visibility_timeout=3, operator_env=OPERATOR_ENV)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    names = [f"{stack.local_aws.prefix}throttle/key-{index}" for index in range(KEYS)]
    received_before = stack.metric('config_refresh_events_received_total{outcome="error"}')
    stack.local_aws.reset_call_counts()
    stack.local_aws.inject_fault("ssm:GetParameter", error="ThrottlingException", count=THROTTLES)
    for name in names:
        stack.put(name, f"{name}-v1")
    assert_converged(stack.local_aws, stack.fleet, names, timeout=120)
    assert stack.local_aws.pending_faults() == []

    # Every key's first read failed after all of botocore's attempts, and its message was kept...
    failed = sorted(set(FAILED_READ.findall(stack.operator.log_text())))
    assert failed == sorted(names), failed
    errors = stack.metric('config_refresh_parameter_store_calls_total{api="GetParameter",outcome="error"}')
    assert errors == KEYS, errors
    kept = stack.metric('config_refresh_events_received_total{outcome="error"}') - received_before
    assert kept == KEYS, kept
    # ...so each change reached the fleet from a second delivery of its one message (trigger "event":
    # not the resync pass, whose first run is minutes away), which was then deleted.
    for name in names:
        rollout = stack.wait_phase(name, 1, {"Succeeded"})
        assert rollout["spec"]["source"]["trigger"] == "event", rollout["spec"]["source"]
        assert rollout["status"]["progress"] == "10/10"
        assert len(stack.refreshes_of(name)) == 1, name
    stack.wait_for(lambda: stack.queue_depth() == (0, 0), timeout=60, what="every message deleted")
    calls = stack.local_aws.call_counts()["ssm:GetParameter"]
    assert calls >= THROTTLES + KEYS, calls
    watch.assert_monotonic()
    print(
        f"\nthrottling: {THROTTLES} ThrottlingExceptions injected ({ATTEMPTS} attempts x {KEYS} first "
        f"reads), {calls} GetParameter calls in all, {errors:.0f} reads failed after botocore's "
        f"retries and were redelivered, {KEYS}/{KEYS} changes applied from the redelivered message"
    )
