"""Issue 6 item 5: would DiscoverInstancesRevision let the fan-out skip DiscoverInstances? The figure.

A revision-gated cache still makes one Cloud Map call per rollout (the revision), so it can only win the
difference between the two calls' latencies. This measures both against the local stack with 100
instances and prints the figures (never asserted), and checks the one property such a cache would rely
on: the revision moves when an instance is registered.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from devstack.aws.local_aws import LocalAws

INSTANCES = 100
CALLS = 200


def timed(call: Callable[[], Any]) -> tuple[float, float]:
    samples = []
    for _ in range(CALLS):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[round(0.99 * (len(samples) - 1))]


def test_discover_instances_revision_against_discover_instances(local_aws: LocalAws) -> None:
    cloudmap = local_aws.client("servicediscovery")
    for i in range(INSTANCES):
        local_aws.register_instance(f"pod-{i}", f"127.0.0.{10 + i}", 50051, attributes={"tenant": "acme"})
    names = {"NamespaceName": local_aws.namespace_name, "ServiceName": local_aws.service_name}

    healthy: dict[str, Any] = {"HealthStatus": "HEALTHY", "MaxResults": INSTANCES, **names}
    discover = timed(lambda: cloudmap.discover_instances(**healthy))
    revision = timed(lambda: cloudmap.discover_instances_revision(**names))
    print(
        f"\nCloud Map, {INSTANCES} instances, {CALLS} calls each: "
        f"DiscoverInstances p50 {discover[0]:.1f} ms p99 {discover[1]:.1f} ms; "
        f"DiscoverInstancesRevision p50 {revision[0]:.1f} ms p99 {revision[1]:.1f} ms"
    )

    found = cloudmap.discover_instances(**healthy)["Instances"]
    assert len(found) == INSTANCES
    before = cloudmap.discover_instances_revision(**names)["InstancesRevision"]
    local_aws.register_instance("pod-new", "127.0.0.250", 50051)
    assert cloudmap.discover_instances_revision(**names)["InstancesRevision"] > before
