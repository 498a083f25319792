"""Row: sustained load (issue 20's two load rows): 50 changes/s over 20 keys on 100 instances for 3N s.

The whole local stack (devstack.stack, as the `path` row), one paced writer thread per key
(devstack.stack.load, the same driver as the memory guard in tests/reliability/test_load.py). Measured:

- the share of the rollouts started during the load that a newer one Superseded after their fan-out had
  begun (status counts targets): each is Refresh calls to the whole fleet that were wasted;
- the operator's resident memory (VmRSS) after N s and after 3N s of the load (60 s and 180 s; 20 s and
  60 s with `--quick`), and before it; and the most messages the operator held (SQS's in-flight count,
  sampled every second) against its `max_held_messages` bound.

Latency under this load is not a target: 100 real instances, moto, the API server and the operator share
the machine's cores, and the row reports it only to show the operator kept up.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.common import Check, RowResult, percentile, say
from bench.targets import OVERLOAD_RSS_GROWTH, SUPERSEDED_SHARE
from configrefresh_api.groupversion import GROUP, REFRESHES, VERSION
from configrefresh_api.phases import TERMINAL_PHASES


def _listed(api: Any, namespace: str) -> list[dict[str, Any]]:
    """Every ConfigRefresh of the namespace, 100 per page (whole lists of objects with 100 instance
    results each timed out on an API server this busy)."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page: Any = api.list_namespaced_custom_object(
            GROUP, VERSION, namespace, REFRESHES, limit=100, _continue=token, _request_timeout=60
        )
        items += page["items"]
        token = page["metadata"].get("continue")
        if not token:
            return items


def _settle(api: Any, namespace: str, timeout: float = 600.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            items = _listed(api, namespace)
        except Exception as error:  # an API server saturated by the load may time out: ask again
            say(f"  listing the rollouts failed ({type(error).__name__}); again in 2 s")
            time.sleep(2.0)
            continue
        if items and all((i.get("status") or {}).get("phase") in TERMINAL_PHASES for i in items):
            return items
        time.sleep(1.0)
    raise TimeoutError(f"rollouts not all finished {timeout:.0f} s after the load")


def run(
    *, instances: int, rate: float, keys: int, first: float, operator_env: dict[str, str] | None = None
) -> RowResult:
    """`operator_env`: settings for the operator (e.g. CONFIG_REFRESH_COALESCE_HOLD_SECONDS), for a
    comparison; the row runs it as it ships."""
    from kubernetes import client

    from devstack.stack.builder import Stack
    from devstack.stack.load import phases, superseded_mid_fan_out, sustain

    result = RowResult(title="Sustained load: superseded rollouts and memory", method=__doc__ or "")
    late = 3 * first
    say(f"  starting the whole stack with {instances} config-service instances ...")
    stack = Stack.start(instances=instances, namespace="bench-load", operator_env=operator_env)
    security = stack.security_name()
    api_client = stack.control_plane.api_client()
    try:
        names = [f"{stack.local_aws.prefix}bench/load/key-{index}" for index in range(keys)]
        say(f"  {rate:g} changes/s over {keys} keys for {late:g} s ...")
        load = sustain(stack, names, rate=rate, seconds=late, marks=[first, late])
        written = time.monotonic()
        objects = _settle(client.CustomObjectsApi(api_client), stack.namespace)
        settled = time.monotonic() - written
    finally:
        api_client.close()  # type: ignore[no-untyped-call]
        stack.stop()
    found = phases(objects)
    mid = superseded_mid_fan_out(objects)
    share = mid / len(objects)
    growth = load.growth(first, late)
    latencies = [float(o["status"]["latencyMs"]) / 1000 for o in objects if o["status"].get("latencyMs")]
    say(f"  {load.describe()}; {len(objects)} rollouts {dict(found)}, superseded mid-fan-out {mid}")
    offered = load.achieved >= 0.8 * rate
    shortfall = "" if offered else f" (offered only {load.achieved:.1f}/s: not the load the row names)"
    result.checks.append(
        Check(
            what=f"{rate:g} changes/s sustained on {instances} instances: rollouts Superseded mid-fan-out",
            target=f"≤ {SUPERSEDED_SHARE:.0%}",
            measured=f"{share:.0%} ({mid} of {len(objects)} rollouts; {security}){shortfall}",
            met=offered and share <= SUPERSEDED_SHARE,
        )
    )
    result.checks.append(
        Check(
            what=f"operator RSS after {late:g} s vs after {first:g} s of {rate:g} changes/s (overload)",
            target=f"within {OVERLOAD_RSS_GROWTH:.0%}",
            measured=(
                f"{growth:+.1%} ({load.rss_at[first] / 1024:.1f} → {load.rss_at[late] / 1024:.1f} MiB;"
                f" {load.baseline_kib / 1024:.1f} MiB before the load){shortfall}"
            ),
            met=offered and abs(growth) <= OVERLOAD_RSS_GROWTH,
        )
    )
    result.tables.append(
        (
            [
                "instances",
                "keys",
                "writes (rate)",
                "rollouts",
                "phases",
                "Superseded mid-fan-out",
                "RSS before / N s / 3N s",
                "messages held (max)",
                "all finished after the last write",
                "commit → last ack p50 / p99",
            ],
            [
                [
                    str(instances),
                    str(keys),
                    f"{load.writes} ({load.achieved:.1f}/s for {load.elapsed:.0f} s)",
                    str(len(objects)),
                    ", ".join(f"{p} {n}" for p, n in sorted(found.items())),
                    f"{mid} ({share:.0%})",
                    f"{load.baseline_kib / 1024:.1f} / {load.rss_at[first] / 1024:.1f} /"
                    f" {load.rss_at[late] / 1024:.1f} MiB (N = {first:g})",
                    str(load.held_max),
                    f"{settled:.1f} s",
                    (
                        f"{statistics.median(latencies):.1f} / {percentile(latencies, 99):.1f} s"
                        if latencies
                        else "-"
                    ),
                ]
            ],
        )
    )
    return result
