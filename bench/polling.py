"""The alternative, same run: the fleet reading through a TTL/polling cache instead of being pushed to.

Real config-service processes, the operator absent, with their own TTL re-read as the only way a change
arrives (`CONFIG_SERVICE_TTL_SECONDS` = 5 and = 45, 45 s being AppConfig Agent's default poll interval;
jitter 0.1, the service's default: each entry is re-read 0.9-1.0 x TTL after it was loaded, from 0.8 x TTL
when a round fills its last call up with entries nearly due (config_service/ttl.py); checked every
TTL/10). The fleet caches 10 parameters.

Staleness is MEASURED, with the same client-side probe as the push path (bench/staleness.py): after
PutParameter returns, GetConfig on every instance until it serves the version written; staleness =
PutParameter returned → that instance serves it, one sample per (write, instance), p50/p99 over all.
Writes go to the 10 parameters at independent, uniformly random moments, 24 writes per TTL in all
(`make bench`: 144 writes over 30 s at TTL 5 s and 72 writes over 135 s at TTL 45 s, 20 instances;
`--quick`: 48 over 10 s and 24 over 45 s, 10 instances), so the 45 s cache gives 24 samples per
instance per 45 s instead of one write per poll period, and the row takes about 5 minutes. A key
written again before every instance caught up is fine: each write is timed to its own version or a
newer one. The probe is the push side's, with the same settings: each (instance, parameter) asked once
per 50 ms, less often when more are pending than 1,000 calls/s allows; the ratio with push takes this
side's low bound (bench/staleness.py), so the probe's resolution cannot flatter it.

Parameter Store reads are counted at the local AWS endpoint (GetParameter, GetParameters,
GetParametersByPath; the benchmark's PutParameters are not reads) from the first write until every
instance served the last one. A polling cache reads on its own schedule whether or not anything
changes, so this is also its idle cost.

A model is shown beside the measurement, labelled as one: a write lands at a uniformly random point of
an instance's poll period P ≈ TTL, so that instance is stale for U(0, P): p50 ≈ 0.5 P, p99 ≈ 0.99 P.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, say
from bench.staleness import Probe, last_per_write, schedule, summarize
from devstack.aws.local_aws import LocalAws
from devstack.services.fleet import ServiceFleet

READS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath")
KEYS = 10
WRITES_PER_TTL = 24


def model(ttl: float, q: float) -> float:
    """MODEL, not a measurement: one instance's staleness percentile (s) for a uniformly random phase."""
    return float(ttl * q / 100)


def window(ttl: float, writes: int) -> float:
    """Seconds over which `writes` writes are spread so that WRITES_PER_TTL land in each TTL."""
    return writes / WRITES_PER_TTL * ttl


def measure(*, ttl: float, instances: int, writes: int, workdir: Path) -> dict[str, Any]:
    aws = LocalAws.start(log_path=workdir / f"moto-{ttl:g}.log")
    fleet: ServiceFleet | None = None
    probe: Probe | None = None
    try:
        ssm = aws.client("ssm")
        names = [f"{aws.prefix}bench/poll/key-{index}" for index in range(KEYS)]
        for name in names:
            ssm.put_parameter(Name=name, Value="initial", Type="String")
        fleet = ServiceFleet(
            instances,
            local_aws=aws,
            workdir=workdir / f"fleet-{ttl:g}",
            env={"CONFIG_SERVICE_TTL_SECONDS": str(ttl)},
        )
        fleet.start()
        fleet.wait_serving(max(120.0, 3.0 * instances))
        probe = Probe([instance.config_address for instance in fleet])
        duration = window(ttl, writes)
        plan = schedule(keys=KEYS, writes=writes, duration=duration, rng=random.Random())
        aws.reset_call_counts()
        started = time.monotonic()
        for offset, key in plan:
            delay = started + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            name = names[key]
            answer = ssm.put_parameter(Name=name, Value=f"poll-{offset:.3f}", Type="String", Overwrite=True)
            probe.track(name, int(answer["Version"]), time.monotonic())
        probe.wait(timeout=2 * ttl + 30)
        minutes = (time.monotonic() - started) / 60
        counts = aws.call_counts()
        reads = sum(counts.get(action, 0) for action in READS)
        summary = summarize(probe.observations)
        last = list(last_per_write(probe.observations).values())
        return {
            "ttl": ttl,
            "instances": instances,
            "keys": KEYS,
            "writes": writes,
            "window_s": duration,
            "staleness": summary,
            "last_p50_s": percentile(last, 50),
            "last_p99_s": percentile(last, 99),
            "reads": reads,
            "reads_by_action": {k: v for k, v in sorted(counts.items()) if k in READS and v},
            "minutes": minutes,
            "reads_per_minute": reads / minutes,
        }
    finally:
        if probe is not None:
            probe.close()
        if fleet is not None:
            fleet.close()
        aws.stop()


def run(*, instances: int, plan: dict[float, int]) -> list[dict[str, Any]]:
    """plan: TTL seconds → number of writes (spread WRITES_PER_TTL to a TTL)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as scratch:
        for ttl, writes in plan.items():
            say(
                f"  polling cache, TTL {ttl:g} s, {instances} real instances, {KEYS} keys: {writes} writes"
                f" at random moments over {window(ttl, writes):.0f} s ..."
            )
            outcome = measure(ttl=ttl, instances=instances, writes=writes, workdir=Path(scratch))
            s = outcome["staleness"]
            say(
                f"  TTL {ttl:g} s: staleness per instance p50 {s.p50:.2f} s p99 {s.p99:.2f} s"
                f" (low bound {s.p99_low:.2f} s) over {s.samples} samples;"
                f" {outcome['reads_per_minute']:.0f} Parameter Store reads/min"
                f" over {outcome['minutes']:.1f} min"
            )
            results.append(outcome)
    return results
