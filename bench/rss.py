"""The rss row: operator memory with 10,000 instances across 1,000 routes, measured, then profiled.

The measured pass is the method of bench/scale.py (its docstring, the report's method text); the profile
pass (bench/memory_profile.py) runs the same steps on a new stack with tracemalloc on, so its overhead
never reaches the measured figures.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import memory_profile, scale
from bench.common import Check, RowResult, rss_kib, say
from bench.targets import RSS_BYTES
from devstack.stack import kube
from devstack.stack.operator import OperatorProcess

PROFILE_COMMAND = "python -m bench --only rss"


@dataclass
class Pass:
    """What one pass saw; RSS figures in KiB."""

    distinct: int = 0
    base_rss: int = 0
    idle_rss: int = 0
    after: int = 0
    hwm: int = 0
    ready: int = 0
    took: float = 0.0
    phases: Counter[str] = field(default_factory=Counter)
    targets: int = 0
    rolled_out: int = 0
    reached: int = 0
    held: int = 0


def _counts(phases: Counter[str]) -> str:
    return ", ".join(f"{phase} {count}" for phase, count in phases.items())


def _pid(operator: OperatorProcess) -> int:
    assert operator.pid is not None
    return operator.pid


def memory_pass(
    *, routes: int, per_route: int, env: dict[str, str], at_stage: Callable[[str, int], None]
) -> Pass:
    """One run of the row's steps on a new stack; `at_stage(stage, pid)` after each reading (the profile
    pass takes its snapshots there), stages none, routes, rollouts."""
    instances = routes * per_route
    seen = Pass()
    with scale.scale_stack(
        "bench-rss", instances, "minimal", processes=2, attributes=lambda k: {"tenant": f"t{k // per_route}"}
    ) as stack:
        stack.operator_env.update(env)
        aws = stack.parts.local_aws
        seen.distinct = len({endpoint.address for endpoint in stack.endpoints})
        say(f"  {instances} endpoints serving at {seen.distinct} distinct addresses")
        # The same operator with no ConfigRoute first: what the process costs before any route.
        started = time.monotonic()
        operator = stack.deploy([])
        say(f"  registered {instances} instances in Cloud Map in {time.monotonic() - started:.0f} s")
        time.sleep(5)
        seen.base_rss, _ = rss_kib(_pid(operator))
        at_stage("none", _pid(operator))
        operator.stop(grace=5.0)
        say(f"  operator with no routes: RSS {seen.base_rss / 1024:.0f} MiB")
        prefix = aws.prefix
        operator = stack.deploy(
            [
                scale.route(f"t{r}", aws=aws, prefix=f"{prefix}t{r}/", query={"tenant": f"t{r}"})
                for r in range(routes)
            ],
            register=False,
        )
        pid = _pid(operator)
        seen.ready = len(kube.ready_routes(stack.parts.control_plane, stack.parts.namespace))
        seen.idle_rss, _ = rss_kib(pid)
        say(f"  operator indexed {seen.ready}/{routes} routes; RSS {seen.idle_rss / 1024:.0f} MiB")
        at_stage("routes", pid)
        ssm = aws.client("ssm")
        started = time.monotonic()
        for r in range(routes):  # one rollout per route, every route
            ssm.put_parameter(Name=f"{prefix}t{r}/flag", Value="on", Type="String", Overwrite=True)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            items = stack.rollouts()
            seen.phases = Counter((i.get("status") or {}).get("phase", "Pending") for i in items)
            if len(items) >= routes and sum(seen.phases[p] for p in scale.FINAL) >= routes:
                break
            time.sleep(1 if routes <= 100 else 5)  # a list of 1,000 objects is not free for the API server
        seen.took = time.monotonic() - started
        seen.after, seen.hwm = rss_kib(pid)
        at_stage("rollouts", pid)
        items = stack.rollouts()
        seen.targets = sum(int((i.get("status") or {}).get("refreshed", 0)) for i in items)
        seen.rolled_out = len(
            {
                i["spec"]["route"]
                for i in items
                if (i.get("status") or {}).get("phase") == "Succeeded"
                and int(i["status"].get("refreshed", 0)) == per_route
            }
        )
        seen.reached = len(
            {
                entry.get("address")
                for i in items
                for entry in (i.get("status") or {}).get("instances") or []
                if entry.get("result") == "Applied"
            }
        )
        seen.held = stack.endpoints.connected()
    say(
        f"  {routes} routes: {seen.rolled_out} rolled out in {seen.took:.0f} s ({dict(seen.phases)}),"
        f" {seen.targets} instance refreshes at {seen.reached} distinct addresses; the operator holds"
        f" connections to {seen.held}"
    )
    say(f"  RSS after {seen.after / 1024:.0f} MiB, peak (VmHWM) {seen.hwm / 1024:.0f} MiB")
    return seen


def measured_result(seen: Pass, *, routes: int, per_route: int) -> RowResult:
    instances = routes * per_route
    result = RowResult(
        title=f"Operator memory: {instances:,} instances across {routes:,} routes", method=scale.__doc__ or ""
    )
    per_route_kib = (seen.idle_rss - seen.base_rss) / max(1, routes)
    result.tables.append(
        (
            [
                "instances",
                "routes",
                "routes Ready",
                "RSS, no routes",
                "RSS, routes indexed",
                "per route",
                "distinct addresses",
                "routes rolled out",
                "rollouts",
                "instance refreshes (distinct addresses)",
                "connections held",
                "RSS after",
                "peak RSS (VmHWM)",
            ],
            [
                [
                    f"{instances:,}",
                    f"{routes:,}",
                    str(seen.ready),
                    f"{seen.base_rss / 1024:.0f} MiB",
                    f"{seen.idle_rss / 1024:.0f} MiB",
                    f"{per_route_kib:.0f} KiB",
                    f"{seen.distinct:,}",
                    f"{seen.rolled_out:,} of {routes:,}",
                    f"{sum(seen.phases.values())} ({_counts(seen.phases)}, {seen.took:.0f} s)",
                    f"{seen.targets:,} ({seen.reached:,})",
                    f"{seen.held:,}",
                    f"{seen.after / 1024:.0f} MiB",
                    f"{seen.hwm / 1024:.0f} MiB",
                ]
            ],
        )
    )
    grown = seen.after - seen.idle_rss
    result.notes.append(
        f"Where it goes: {seen.base_rss / 1024:.0f} MiB is the operator before any route (interpreter,"
        " kopf and the Kubernetes client libraries it imports, boto3 with its three clients, gRPC);"
        f" routes add {per_route_kib:.0f} KiB each (kopf's per-object handling at start-up, the route"
        f" index); the rollouts add {grown / 1024:.0f} MiB, mostly one warm gRPC channel per address"
        f" reached ({seen.held:,} connections held at the end, about {grown / max(1, seen.held):.0f} KiB"
        " each; a channel is kept until idle for 10 minutes)."
    )
    if seen.rolled_out < routes or seen.reached < instances:
        result.notes.append(
            f"Gap: {seen.rolled_out:,} of {routes:,} routes rolled out to all their {per_route} instances,"
            f" and {seen.reached:,} of {instances:,} distinct addresses acknowledged, within the wait."
        )
    scale_note = "" if instances == 10_000 else f" (run at {instances:,} / {routes:,}: --quick)"
    result.checks.append(
        Check(
            what=f"operator RSS with 10,000 instances across 1,000 routes{scale_note}",
            target=f"≤ {RSS_BYTES / 1e6:.0f} MB",
            measured=(
                f"peak {seen.hwm * 1024 / 1e6:.0f} MB (VmHWM), {seen.idle_rss * 1024 / 1e6:.0f} MB with"
                " routes indexed"
            ),
            met=seen.hwm * 1024 <= RSS_BYTES,
        )
    )
    return result


def operator_memory(
    *,
    routes: int,
    per_route: int,
    measure: bool = True,
    profile: bool = True,
    frames: int = memory_profile.FRAMES,
    command: str = PROFILE_COMMAND,
) -> list[RowResult]:
    """The row: the measured pass (its table and check), then the profile pass (its section)."""
    results: list[RowResult] = []
    seen: Pass | None = None
    if measure:
        seen = memory_pass(routes=routes, per_route=per_route, env={}, at_stage=lambda stage, pid: None)
        results.append(measured_result(seen, routes=routes, per_route=per_route))
    if profile:
        say("  profile pass (tracemalloc on; its RSS is not the row's)")
        with tempfile.TemporaryDirectory(prefix="bench-rss-trace-") as scratch:
            directory = Path(scratch)
            stages: list[memory_profile.Stage] = []

            def snapshot(stage: str, pid: int) -> None:
                stages.append(memory_profile.take(directory, pid, stage))
                facts = stages[-1].facts
                say(
                    f"  traced {stage}: heap {facts['traced'] / 2**20:.1f} MiB,"
                    f" RSS {facts['VmRSS'] / 2**20:.0f} MiB (snapshot in {facts['snapshot_seconds']:.1f} s)"
                )

            memory_pass(
                routes=routes,
                per_route=per_route,
                env=memory_profile.trace_env(directory, frames),
                at_stage=snapshot,
            )
            untraced = None
            if seen is not None:
                untraced = {
                    "none": seen.base_rss * 1024,
                    "routes": seen.idle_rss * 1024,
                    "rollouts": seen.after * 1024,
                }
            results.append(
                memory_profile.section(
                    stages,
                    routes=routes,
                    instances=routes * per_route,
                    untraced_rss=untraced,
                    command=command,
                )
            )
    return results
