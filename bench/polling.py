"""The alternative, same run: the fleet reading through a TTL/polling cache instead of being pushed to.

Real config-service processes with the operator absent and their own TTL re-read as the only way a change
arrives (`CONFIG_SERVICE_TTL_SECONDS` = 5 and = 45, 45 s being AppConfig Agent's default poll interval;
jitter 0.1, the service's default). Measured for real: after each PutParameter returns, every instance is
asked GetConfig every 20 ms until it serves the new version; staleness = until the last instance does.
Parameter Store calls per minute are counted at the local AWS endpoint over the whole measurement.

Writes are spaced by a random wait so each lands at a random point of the instances' poll cycles. A 45 s
poll needs ~45 s per write, so it gets few writes; the distribution is therefore also DERIVED, with an
effective poll period P = the TTL (jitter makes each period 0.9-1.0 x TTL, the scan step adds up to
TTL/10). A write lands at a uniformly random point of the cycle, so one instance is stale for U(0, P).
For the fleet, two bounds: instances that poll in step (a fleet started together, as here: jitter
spreads them only slowly) are stale together, U(0, P): p50 = P/2, p99 = 0.99 P; instances with
independent phases are stale until the last of N, the max of N uniforms: p50 = P * 0.5^(1/N),
p99 = P * 0.99^(1/N). Both give p99 ~ P; the headline ratio uses the lower one (0.99 P), so it is not
flattered. Reads per minute are measured over a window of at least 2 x TTL (N x 60 / P expected).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.common import percentile, say
from devstack.aws.local_aws import LocalAws
from devstack.services.fleet import ServiceFleet

READS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath")


def derived(ttl: float, instances: int, q: float) -> float:
    """Fleet staleness percentile (s) for independent uniformly random phases (the upper bound)."""
    return float(ttl * (q / 100) ** (1 / instances))


def derived_in_step(ttl: float, q: float) -> float:
    """Fleet staleness percentile (s) when the instances poll in step (the lower bound)."""
    return float(ttl * q / 100)


def measure(*, ttl: float, instances: int, writes: int, workdir: Path) -> dict[str, Any]:
    aws = LocalAws.start(log_path=workdir / f"moto-{ttl:g}.log")
    fleet: ServiceFleet | None = None
    try:
        ssm = aws.client("ssm")
        name = f"{aws.prefix}bench/poll/flag"
        ssm.put_parameter(Name=name, Value="initial", Type="String")
        fleet = ServiceFleet(
            instances,
            local_aws=aws,
            workdir=workdir / f"fleet-{ttl:g}",
            env={"CONFIG_SERVICE_TTL_SECONDS": str(ttl)},
        )
        fleet.start()
        fleet.wait_serving(max(120.0, 3.0 * instances))
        time.sleep(random.uniform(0, ttl))
        aws.reset_call_counts()
        started = time.monotonic()
        staleness: list[float] = []
        for index in range(writes):
            value = f"poll-{index}"
            version = int(ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)["Version"])
            written = time.monotonic()
            pending = {instance.instance_id: instance for instance in fleet}
            while pending and time.monotonic() - written < ttl * 3 + 10:
                for key, instance in list(pending.items()):
                    try:
                        if int(instance.get_config(name, timeout=2).version) >= version:
                            del pending[key]
                    except grpc.RpcError:
                        pass
                time.sleep(0.02)
            if pending:
                raise RuntimeError(
                    f"{len(pending)} instances still stale {ttl * 3 + 10:.0f} s after write {index}"
                )
            staleness.append(time.monotonic() - written)
            say(f"    TTL {ttl:g} s, write {index + 1}/{writes}: every instance after {staleness[-1]:.2f} s")
            if index < writes - 1:
                time.sleep(random.uniform(0, ttl))  # the next write lands at a random poll phase
        remaining = started + 2 * ttl - time.monotonic()
        if remaining > 0:  # count reads over at least two periods
            time.sleep(remaining)
        minutes = (time.monotonic() - started) / 60
        counts = aws.call_counts()
        reads = sum(counts.get(action, 0) for action in READS)
        return {
            "ttl": ttl,
            "instances": instances,
            "writes": writes,
            "staleness_s": staleness,
            "reads": reads,
            "minutes": minutes,
            "reads_per_minute": reads / minutes,
        }
    finally:
        if fleet is not None:
            fleet.close()
        aws.stop()


def run(*, instances: int, plan: dict[float, int]) -> list[dict[str, Any]]:
    """plan: TTL seconds → number of writes measured."""
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as scratch:
        for ttl, writes in plan.items():
            say(f"  polling cache, TTL {ttl:g} s, {instances} real instances, {writes} writes ...")
            outcome = measure(ttl=ttl, instances=instances, writes=writes, workdir=Path(scratch))
            s = outcome["staleness_s"]
            say(
                f"  TTL {ttl:g} s: staleness measured p50 {percentile(s, 50):.2f} s max {max(s):.2f} s;"
                f" derived p99 {derived_in_step(ttl, 99):.2f}-{derived(ttl, instances, 99):.2f} s;"
                f" {outcome['reads_per_minute']:.0f} Parameter Store reads/min"
            )
            results.append(outcome)
    return results
