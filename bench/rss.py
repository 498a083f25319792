"""The rss row: operator memory with 10,000 instances across 1,000 routes, measured, then profiled.

Two measured passes, each on a new stack: the operator as it ships (at most 2,000 warm gRPC channels,
CONFIG_REFRESH_MAX_CHANNELS) and with no bound (as before issue 20); the check is the first one's peak.
RSS with the routes indexed is read twice: when every route is Ready, and again SETTLE_SECONDS later,
once the startup burst is over and the operator's periodic malloc_trim (refresh_operator.memory) has run.
Then the profile pass (bench/memory_profile.py: the same steps with tracemalloc on, so its overhead never
reaches the measured figures) and one warm channel measured alone (bench/channel_memory.py). The notes
are computed from the three: where the memory goes, the floor, and what the target would need.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import channel_memory, memory_profile, scale
from bench.common import Check, RowResult, rss_kib, say
from bench.targets import RSS_BYTES
from devstack.stack import kube
from refresh_operator.memory import TRIM_INTERVAL_SECONDS
from refresh_operator.settings import OperatorSettings

PROFILE_COMMAND = "python -m bench --only rss"
TRACED_DEADLINE_SECONDS = 1500
TRACED_CALL_TIMEOUT_SECONDS = 60
"""The traced pass's Refresh call timeout (the CRD's maximum): tracing slows the operator several times."""
TRACED_WAVE_ROUTES = 200
"""The traced pass writes the routes' parameters 200 routes (2,000 instances) at a time. All 1,000 at once,
the traced operator's event loop fell more than a minute behind: calls timed out (678 of 1,000 rollouts
Failed with the scale row's 5 s timeout), or outlived their evicted channel's grace (with 60 s), and the
snapshot after the rollouts profiled that backlog rather than what the rollouts leave behind. The measured
passes write all at once."""
MAX_CHANNELS = int(OperatorSettings.model_fields["max_channels"].default)
"""The operator's default bound on warm channels."""
WARM_FLEET = 1000
"""The fleet the scale row's latency target is set for: its channels must stay warm to meet it."""
SETTLE_SECONDS = int(2 * TRIM_INTERVAL_SECONDS + 5)
"""After every route is Ready: the burst's connections closed and at least one trim since it ended."""

PAGE_CACHE_PROBED = (
    "Part of that native share is the shared libraries' pages mapped into the process, and how many of"
    " them a start maps depends on what the kernel's page cache holds (it maps the cached neighbours of"
    " each page touched): probed once for issue 20 with a process importing what the operator imports,"
    " 34 MiB of file-backed RSS with the virtualenv just reinstalled (every library file in the cache),"
    " 27 MiB after dropping the page cache, and 27 MiB again at the next start. The virtualenv was"
    " reinstalled just before this run, with no operator code changed that runs before a route: that is"
    " the likely cause of the 7 MiB between this run's no-route reading and the earlier run's 103 MiB (as"
    " much as the probe's drop), not measured directly."
)
"""Not measured by this run: a one-time probe, kept with its conditions."""

NATIVE_PROBED = (
    "What the routes' untraced share is, probed once for issue 20 (1,000 routes, the operator as it ships,"
    " in-process readings of glibc's mallinfo2, Python's sys._debugmallocstats and /proc/self/smaps; not"
    " part of this run): hardly any of it is C libraries' memory. When every route is Ready the startup"
    " burst is still alive: 34 MiB more live Python objects than with no route and 11 MiB more in use in"
    " glibc's heap (the API connection pool full, 26 more TLS connections; the listings being parsed)."
    " 20 s later glibc's in-use memory is back within 1 MiB of the no-route process and the live Python"
    " objects within 10 MiB (3 MiB after a full gc: the rest were reference cycles not yet collected), yet"
    " RSS has not moved: the freed memory stays in the process, 17 MiB free in glibc's heap below a top"
    " still in use (malloc_trim(0) gives back 15 MiB of it in 1 ms) and 32 to 36 MiB free inside"
    " Python's 1 MiB arenas (87 to 91 arenas for 51 to 59 MiB of live objects), which the interpreter"
    " returns only when an arena is empty. The thread count (5), the shared libraries and the stacks do"
    " not change. The operator now calls malloc_trim(0) every 30 s on its blocking pool"
    " (refresh_operator.memory), returning what has been freed by then: 45 s after every route was Ready"
    " it held 144 MiB in one run, 159 MiB in another (151 MiB 65 s later: the burst's memory is freed"
    " over a minute or two, each trim returns what is free by then), against 165 and 166 MiB without the"
    " trim, unchanged since Ready. The rollouts then reuse the freed space (Python's arenas do not grow"
    " during them), so the trim lowers the routes-indexed figure much more than the peak: 228 and 231 MiB"
    " peak with the periodic trim, 235 and 236 MiB with none, 231 MiB with one trim after the routes, 227"
    " MiB with PYTHONMALLOC=malloc and one trim (all of Python's memory in glibc's heap, where the trim"
    " reaches it; 3 MiB more with no routes): runs on a loaded machine (load average 2 to 9), where the"
    " number of Python arenas the burst leaves (83 to 91) moves the peak by as much. (The probed process"
    " imported the probe: 110 MiB with no routes.)"
)
"""Measured with a probe that is not part of the row (see the note): stated, not recomputed."""


@dataclass
class Pass:
    """What one pass saw; RSS figures in KiB."""

    distinct: int = 0
    base_rss: int = 0
    idle_rss: int = 0
    settled_rss: int = 0
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


def memory_pass(
    *,
    routes: int,
    per_route: int,
    env: dict[str, str],
    at_stage: Callable[[str, int], None],
    deadline_seconds: int | None = None,
    call_timeout_seconds: int | None = None,
    wave_routes: int | None = None,
) -> Pass:
    """One run of the row's steps on a new stack; `at_stage(stage, pid)` after each reading (the profile
    pass takes its snapshots there), stages none, routes, rollouts. `deadline_seconds`: the routes'
    rollout deadline and `call_timeout_seconds` the Refresh call timeout instead of bench/scale.py's (the
    traced operator is several times slower). `wave_routes`: write that many routes' parameters at a time,
    each batch once the previous one's rollouts ended (default: all at once)."""
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
        seen.base_rss, _ = rss_kib(scale.operator_pid(operator))
        at_stage("none", scale.operator_pid(operator))
        operator.stop(grace=5.0)
        say(f"  operator with no routes: RSS {seen.base_rss / 1024:.0f} MiB")
        prefix = aws.prefix
        bodies = [
            scale.route(f"t{r}", aws=aws, prefix=f"{prefix}t{r}/", query={"tenant": f"t{r}"})
            for r in range(routes)
        ]
        for body in bodies:
            if deadline_seconds is not None:
                body["spec"]["refresh"]["deadlineSeconds"] = deadline_seconds
            if call_timeout_seconds is not None:
                body["spec"]["refresh"]["timeoutSeconds"] = call_timeout_seconds
        operator = stack.deploy(bodies, register=False)
        pid = scale.operator_pid(operator)
        seen.ready = len(kube.ready_routes(stack.parts.control_plane, stack.parts.namespace))
        seen.idle_rss, _ = rss_kib(pid)
        say(f"  operator indexed {seen.ready}/{routes} routes; RSS {seen.idle_rss / 1024:.0f} MiB")
        at_stage("routes", pid)
        time.sleep(SETTLE_SECONDS)
        seen.settled_rss, _ = rss_kib(pid)
        say(f"  {SETTLE_SECONDS} s later: RSS {seen.settled_rss / 1024:.0f} MiB")
        ssm = aws.client("ssm")
        started = time.monotonic()
        deadline = time.monotonic() + max(900, (deadline_seconds or 0) + 60)
        step = wave_routes or routes
        for first in range(0, routes, step):  # one rollout per route, every route
            written = min(routes, first + step)
            for r in range(first, written):
                ssm.put_parameter(Name=f"{prefix}t{r}/flag", Value="on", Type="String", Overwrite=True)
            wave = {str(body["metadata"]["name"]) for body in bodies[:written]}  # the routes written so far
            while time.monotonic() < deadline:
                items = stack.rollouts()
                seen.phases = Counter((i.get("status") or {}).get("phase", "Pending") for i in items)
                # per route, not a count of final rollouts: a route can have more than one (anti-entropy's
                # repairs, a resync), which made the count reach the wave's size with routes still running
                if wave <= finished_routes(items):
                    break
                # a list of 1,000 objects is not free for the API server
                time.sleep(1 if routes <= 100 else 5)
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


def finished_routes(items: list[dict[str, Any]]) -> set[str]:
    """The routes with a rollout in a final phase, among ConfigRefresh objects `items`."""
    return {
        str(item["spec"]["route"]) for item in items if (item.get("status") or {}).get("phase") in scale.FINAL
    }


VARIANTS: dict[str, dict[str, str]] = {
    f"as it ships (at most {MAX_CHANNELS:,} warm channels)": {},
    "no bound on warm channels (CONFIG_REFRESH_MAX_CHANNELS=0, as before issue 20)": {
        "CONFIG_REFRESH_MAX_CHANNELS": "0"
    },
}
"""The measured passes, one after the other on stacks of their own; the first is the row's figure."""


def measured_result(passes: dict[str, Pass], *, routes: int, per_route: int) -> RowResult:
    instances = routes * per_route
    result = RowResult(
        title=f"Operator memory: {instances:,} instances across {routes:,} routes",
        method=(scale.__doc__ or "") + "\n" + (__doc__ or "").split("\n", 2)[2],
    )
    rows = []
    for name, seen in passes.items():
        rows.append(
            [
                name,
                f"{instances:,}",
                f"{routes:,}",
                str(seen.ready),
                f"{seen.base_rss / 1024:.0f} MiB",
                f"{seen.idle_rss / 1024:.0f} MiB",
                f"{(seen.idle_rss - seen.base_rss) / max(1, routes):.0f} KiB",
                f"{seen.settled_rss / 1024:.0f} MiB",
                f"{seen.distinct:,}",
                f"{seen.rolled_out:,} of {routes:,}",
                f"{sum(seen.phases.values())} ({_counts(seen.phases)}, {seen.took:.0f} s)",
                f"{seen.targets:,} ({seen.reached:,})",
                f"{seen.held:,}",
                f"{seen.after / 1024:.0f} MiB",
                f"{seen.hwm / 1024:.0f} MiB",
            ]
        )
    result.tables.append(
        (
            [
                "operator",
                "instances",
                "routes",
                "routes Ready",
                "RSS, no routes",
                "RSS, routes indexed",
                "per route",
                f"RSS, routes indexed, {SETTLE_SECONDS} s later",
                "distinct addresses",
                "routes rolled out",
                "rollouts",
                "instance refreshes (distinct addresses)",
                "connections held",
                "RSS after",
                "peak RSS (VmHWM)",
            ],
            rows,
        )
    )
    for name, seen in passes.items():
        if seen.rolled_out < routes or seen.reached < instances:
            result.notes.append(
                f"Gap ({name}): {seen.rolled_out:,} of {routes:,} routes rolled out to all their"
                f" {per_route} instances, and {seen.reached:,} of {instances:,} distinct addresses"
                " acknowledged, within the wait."
            )
    seen = next(iter(passes.values()))
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
    channels: int = 1000,
    keep: Path | None = None,
) -> list[RowResult]:
    """The row: the measured passes (their table and the check), the profile pass (its section), and
    what one warm channel costs outside the operator (bench/channel_memory.py; `channels` 0: skipped).
    `keep`: a directory to copy the snapshots to, for a closer look."""
    results: list[RowResult] = []
    passes: dict[str, Pass] = {}
    if measure:
        for name, env in VARIANTS.items():
            say(f"  measured pass: {name}")
            passes[name] = memory_pass(
                routes=routes, per_route=per_route, env=env, at_stage=lambda stage, pid: None
            )
        results.append(measured_result(passes, routes=routes, per_route=per_route))
    analysis: memory_profile.Analysis | None = None
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

            traced = memory_pass(
                routes=routes,
                per_route=per_route,
                env={**next(iter(VARIANTS.values())), **memory_profile.trace_env(directory, frames)},
                at_stage=snapshot,
                deadline_seconds=TRACED_DEADLINE_SECONDS,
                call_timeout_seconds=TRACED_CALL_TIMEOUT_SECONDS,
                wave_routes=TRACED_WAVE_ROUTES,
            )
            untraced = None
            if passes:
                seen = next(iter(passes.values()))
                untraced = {"none": seen.base_rss, "routes": seen.idle_rss, "rollouts": seen.after}
                untraced = {stage: kib * 1024 for stage, kib in untraced.items()}
            analysis = memory_profile.analyse(stages, untraced)
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                for path in directory.iterdir():
                    shutil.copy(path, keep / path.name)
        profiled = memory_profile.section(
            analysis, routes=routes, instances=routes * per_route, command=command
        )
        profiled.notes.insert(
            0,
            f"The traced pass: {traced.rolled_out:,} of {routes:,} routes rolled out to all their instances"
            f" ({_counts(traced.phases)}, {traced.took:.0f} s; the routes' rollout deadline raised to"
            f" {TRACED_DEADLINE_SECONDS} s and the Refresh call timeout to {TRACED_CALL_TIMEOUT_SECONDS} s,"
            f" the parameters written {TRACED_WAVE_ROUTES:,} routes at a time, as tracing slows the operator"
            f" several times), {traced.held:,} channels warm at the end.",
        )
        results.append(profiled)
    figures: dict[str, tuple[float, float]] = {}
    if channels:
        say(f"  one warm channel, {channels} at once (bench/channel_memory.py)")
        lone, figures = channel_memory.run(channels=channels, rounds=2)
        results.append(lone)
    if passes and analysis is not None:
        results[0].notes[:0] = where_it_goes(passes, analysis, figures, routes=routes, per_route=per_route)
    return results


def _mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def _top(groups: Counter[str], count: int = 3) -> str:
    """The largest groups, by their short name (the part before the parenthesis)."""
    ranked = sorted(groups.items(), key=lambda item: -item[1])[:count]
    return ", ".join(f"{group.split(' (')[0]} {value / 2**20:.1f} MiB" for group, value in ranked)


def _site(entry: tuple[tuple[str, str, str], int]) -> str:
    (site, via, caller), size = entry
    on_behalf = caller or via
    return f"{size / 2**20:.1f} MiB at `{site}`" + (f" for `{on_behalf}`" if on_behalf else "")


def where_it_goes(
    passes: dict[str, Pass],
    analysis: memory_profile.Analysis,
    channels: dict[str, tuple[float, float]],
    *,
    routes: int,
    per_route: int,
) -> list[str]:
    """The row's notes, from this run's profile and passes: where the memory goes, the floor, the target."""
    shipped = next(iter(passes.values()))
    a = analysis
    heap = {stage: float(a.heaps[stage].total) for stage in a.names}
    native = {stage: a.native(stage) for stage in a.names}
    largest = a.heaps["none"].by_package.most_common(6)
    packages = ", ".join(f"{name} {size / 2**20:.1f}" for name, size in largest)
    notes = [
        f"Where it goes (the profile section below, same run): with no route the operator is"
        f" {shipped.base_rss / 1024:.0f} MiB, {_mib(heap['none'])} of it traced Python heap (by package, MiB:"
        f" {packages}: what importing them builds, botocore's service models and endpoint data, the client"
        f" libraries' modules) and {_mib(native['none'])} native (the interpreter, the shared libraries'"
        " code and data: gRPC core, OpenSSL, protobuf's and yaml's C parts; thread stacks; allocator"
        " slack). None of it grows with routes or instances: it is the floor of this process short of"
        " dropping a library. " + PAGE_CACHE_PROBED,
    ]
    routes_grown = (shipped.idle_rss - shipped.base_rss) * 1024
    top = a.top_sites("routes", 2)
    listing = any("kopf/_cogs/clients/fetching.py" in key[2] for key, _ in top[:1])
    ours = a.group_growth("routes")[next(iter(memory_profile.GROUPS))]
    notes.append(
        f"The {routes:,} routes add {_mib(routes_grown)} ({routes_grown / 1024 / max(1, routes):.0f} KiB per"
        f" route): {_mib(a.grown('routes', heap))} traced ({_top(a.group_growth('routes'))}) and"
        f" {_mib(a.grown('routes', native))} native. The largest sites: "
        + "; ".join(_site(entry) for entry in top)
        + (
            ": kopf's initial listing of the ConfigRoutes, one response for all of them (kopf's"
            " settings.watching.chunk_size is unset) parsed into Python objects, still alive when every"
            " route is Ready"
            if listing
            else ""
        )
        + f"; our own objects (the route index, discovery) are {ours / 1024 / max(1, routes):.1f} KiB per"
        " route."
    )
    settled = shipped.idle_rss - shipped.settled_rss
    notes.append(
        f"{SETTLE_SECONDS} s after every route is Ready the operator is at {shipped.settled_rss / 1024:.0f}"
        f" MiB, {settled / 1024:.0f} MiB below its reading at Ready (the table's column). " + NATIVE_PROBED
    )
    rollouts_native = a.grown("rollouts", native)
    groups = a.group_growth("rollouts")
    freed = [(group, size) for group, size in groups.items() if size < -(2**20)]
    grown = Counter({group: size for group, size in groups.items() if size > 0})
    notes.append(
        f"One rollout per route then adds {(shipped.after - shipped.idle_rss) / 1024:.0f} MiB as the"
        f" operator ships ({shipped.held:,} channels warm at the end, the bound): the traced heap"
        f" {a.grown('rollouts', heap) / 2**20:+.0f} MiB net ({_top(grown)} grown"
        + "".join(f"; {group.split(' (')[0]} {size / 2**20:.1f} MiB freed" for group, size in freed)
        + f") and {_mib(rollouts_native)} native, mostly gRPC core's channels: at most"
        f" {rollouts_native / 1024 / max(1, shipped.held):.0f} KiB per channel kept. At most, because"
        " Python memory freed in the step (the routes' listing) stays in the process and is reused"
        " rather than returned, so RSS minus the net traced growth overstates the native part; and"
        " closed channels' memory is reused by new ones, not returned either."
    )
    unbounded = list(passes.values())[-1] if len(passes) > 1 else None
    if unbounded is not None and unbounded.held > MAX_CHANNELS:
        extra = unbounded.after - shipped.after
        notes.append(
            f"With no bound (the table's second line) the rollouts leave {unbounded.held:,} channels warm"
            f" and the operator at {unbounded.after / 1024:.0f} MiB ({unbounded.hwm / 1024:.0f} MiB peak),"
            f" {extra / 1024:+.0f} MiB against the bound: {extra / max(1, unbounded.held - MAX_CHANNELS):.0f}"
            f" KiB per channel beyond the {MAX_CHANNELS:,}. The bound costs a reconnect to an instance"
            " whose channel was closed (the cold row measures one); a fleet within it keeps every channel."
        )
    alone = channels.get(channel_memory.AS_OPENED)
    if alone is not None:
        ratios = [channels[name][0] / alone[0] for name in channel_memory.OPTION_VARIANTS if name in channels]
        spread = max(abs(ratio - 1) for ratio in ratios)
        notes.append(
            f"A warm channel measured alone (the last section) costs {alone[0]:.0f} KiB, {alone[1]:.0f} KiB"
            " of it Python objects: the rest is gRPC core's channel, subchannel and HTTP/2 transport, and"
            f" gRPC's buffer options move it by at most {spread:.0%}. That is the floor per warm channel;"
            " the lever is how many are kept warm (CONFIG_REFRESH_MAX_CHANNELS)."
        )
    budget = RSS_BYTES / 2**10  # KiB
    # The trim and the collector return the startup burst's memory over a minute: the settled reading
    # is what the routes cost, the one at Ready still holds the burst.
    indexed = shipped.settled_rss or shipped.idle_rss
    room = budget - indexed
    if room < 0:
        notes.append(
            f"What the target needs: {RSS_BYTES / 1e6:.0f} MB is {budget / 1024:.0f} MiB. With the"
            f" {routes:,} routes indexed and settled, before any rollout, the operator is at"
            f" {indexed / 1024:.0f} MiB, so the target is out of reach at this size whatever the"
            f" channel bound: it would need the no-route process and the routes together"
            f" {-room / 1024:.0f} MiB smaller (fewer libraries imported, kopf's listing of the routes kept"
            " in chunks and freed), and then a bound of a few hundred channels, i.e. a reconnect on most"
            " refreshes of a 10,000-instance fleet."
        )
    elif alone is not None:
        notes.append(
            f"What the target needs: {RSS_BYTES / 1e6:.0f} MB is {budget / 1024:.0f} MiB; with the routes"
            f" indexed and settled there is room for {room / max(alone[0], 1):,.0f} warm channels at"
            f" {alone[0]:.0f} KiB each."
        )
    if alone is not None:
        floor = shipped.base_rss + ours / 1024 + WARM_FLEET * alone[0]
        notes.append(
            f"The floor of the peak, short of dropping a library: the no-route process"
            f" ({shipped.base_rss / 1024:.0f} MiB), the routes' own objects ({ours / 2**20:.0f} MiB, with"
            f" nothing of the listing's burst left and no allocator slack at all) and a {WARM_FLEET:,}"
            f"-instance fleet kept warm, the scale row's ({WARM_FLEET:,} x {alone[0]:.0f} KiB ="
            f" {WARM_FLEET * alone[0] / 1024:.0f} MiB): {floor / 1024:.0f} MiB against"
            f" {budget / 1024:.0f} MiB. "
            + (
                "So at this size the memory target and the 1,000-instance latency target (which needs"
                " those channels warm: the cold row measures a reconnect) cannot both be met by this"
                " process; a bound below the fleet trades one for the other."
                if floor > budget
                else "Within the target: what is above it is the burst's memory not yet returned."
            )
        )
    return notes
