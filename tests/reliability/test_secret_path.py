"""Security 11: a SecureString value goes through the whole path (Parameter Store, event, operator,
fan-out, instance, GetConfig) and is absent from every log line, ConfigRefresh object, Event and metrics
scrape of the test, failure paths included (a stopped instance makes the rollout PartiallyFailed)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from tests.reliability.checks import VersionWatch, assert_converged, leak_surfaces, leaked_in


def test_a_secure_string_reaches_the_instances_and_nowhere_else(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    # Over TLS, so the value itself travels (on a plaintext route it would go as an invalidation).
    stack = make_stack(5, maxAttempts=2, tls=True)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    name = f"{stack.local_aws.prefix}payments/api_key"
    down = stack.fleet[4]
    down.stop()
    first_secret = f"s3cr3t-{secrets.token_urlsafe(24)}"
    version = stack.put(name, first_secret, kind="SecureString")
    partial = stack.wait_phase(name, version, {"PartiallyFailed"}, timeout=90)
    assert [e["id"] for e in partial["status"]["instances"] if e["result"] == "Failed"] == [down.instance_id]
    down.start()
    down.wait_serving()
    second_secret = f"s3cr3t-{secrets.token_urlsafe(24)}"
    version = stack.put(name, second_secret, kind="SecureString")
    stack.wait_phase(name, version, {"Succeeded"}, timeout=90)
    assert_converged(stack.local_aws, stack.fleet, [name])
    assert stack.values(name) == [(second_secret, version)] * 5
    watch.assert_monotonic()
    sample = 'config_service_refreshes_total{mode="value",result="applied"}'
    for instance in stack.fleet:  # the values themselves were pushed (over TLS), not invalidations
        assert any(line.startswith(sample) for line in instance.metrics_text().splitlines())

    surfaces = leak_surfaces(stack)
    assert all(surfaces.values()), [where for where, text in surfaces.items() if not text]
    for secret in (first_secret, second_secret):
        assert leaked_in(secret, surfaces) == []
        assert leaked_in(secret[7:], surfaces) == []  # nor without its recognisable prefix
    print(
        f"\nsecret path: 2 SecureString versions applied on 5 instances (one failure path); searched "
        f"{len(surfaces)} surfaces, {sum(len(t) for t in surfaces.values())} characters: 0 occurrences"
    )
