"""Where the operator's memory goes: a tracemalloc profile of the rss row, in a pass of its own.

Tracing inflates memory (tracemalloc keeps a traceback per live allocation) and slows the process, so the
RSS figures of the row come from the untraced pass; this pass runs the same steps again on a new stack
(devstack.stack, podSync off, the same fake endpoints and routes) with the operator started as it
ships plus `PYTHONTRACEMALLOC=<frames>` and a bench-only `sitecustomize.py` on its PYTHONPATH
(bench/memprofile_site: nothing of it is in the operator's code). On SIGUSR2 that hook dumps
`tracemalloc.take_snapshot()`; the bench sends it at three points: with no ConfigRoute (5 s after the
operator is ready), once the routes are indexed (every route Ready), and after one rollout per route
(every rollout final).

The snapshots are read here. Each live allocation is attributed to the package of the innermost frame of
its traceback that is not the standard library (an asyncio task a kopf handler created is kopf's, a dict
json built for the Kubernetes client is the client's); an allocation whose traceback is all standard library
(the interpreter, asyncio internals, stdlib imports) is `stdlib`. Per stage: the traced Python heap by
package (at the first stage, its size; then the growth), and the 8 allocation sites (innermost file:line,
with the frame it is attributed to) that grew most. What tracemalloc cannot see is native memory: C
libraries' own malloc (gRPC core: channels, subchannels, HTTP/2 transports, TCP buffers; OpenSSL),
allocator fragmentation, thread stacks. Its growth is the untraced pass's RSS growth minus the traced
heap growth of the same step.

Run alone (reduced size for a smoke run, prints the sections):
`python -m bench.memory_profile --routes 200 --per-route 10` (2,000 instances; `--profile-only` skips the
untraced passes, and with them the native share; `--channels N` adds bench/channel_memory.py's section;
`--keep DIR` keeps the snapshots).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import RowResult

SITE_DIR = Path(__file__).resolve().parent / "memprofile_site"
TRACE_DIR_ENV = "CONFIG_REFRESH_BENCH_TRACE_DIR"
FRAMES = 16
"""Frames kept per traceback: deep enough to reach the non-stdlib caller through asyncio and json."""
TOP_SITES = 8
STAGES = ("none", "routes", "rollouts")
STAGE_TITLES = {"none": "no routes", "routes": "routes indexed", "rollouts": "after the rollouts"}

GROUPS: dict[str, tuple[str, ...]] = {
    "ours (refresh_operator, configrefresh_api, generated stubs)": (
        "refresh_operator",
        "configrefresh_api",
        "configrefresh",
    ),
    "kopf": ("kopf",),
    "Kubernetes clients and HTTP (kubernetes, kubernetes_asyncio, aiohttp, urllib3, yarl, multidict)": (
        "kubernetes",
        "kubernetes_asyncio",
        "aiohttp",
        "aiosignal",
        "aiohappyeyeballs",
        "frozenlist",
        "multidict",
        "propcache",
        "yarl",
        "urllib3",
        "yaml",
        "dateutil",
        "certifi",
    ),
    "grpc (grpc, protobuf)": ("grpc", "google"),
    "boto (boto3, botocore, s3transfer, jmespath)": ("boto3", "botocore", "s3transfer", "jmespath"),
}
OTHER = "other third-party"
STDLIB = "stdlib only (interpreter, asyncio, stdlib imports)"
_PACKAGE_GROUP = {package: group for group, packages in GROUPS.items() for package in packages}
_ASKERS = ("kopf", "refresh_operator", "configrefresh_api")
"""Whose request an allocation served: the sites table names the innermost frame of these too."""
_PLUMBING = ("kopf/_cogs/clients/api.py", "kopf/_cogs/clients/auth.py")
"""kopf's HTTP wrappers: the frame that asked is the one calling them."""
_OURS_DIRS = ("/operator/refresh_operator/", "/configrefresh_api/", "/protos/configrefresh/")


def trace_env(directory: Path, frames: int = FRAMES) -> dict[str, str]:
    """What the profiled operator's environment adds: tracing from interpreter start, the dump hook."""
    path = os.pathsep.join(p for p in (str(SITE_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONTRACEMALLOC": str(frames), "PYTHONPATH": path, TRACE_DIR_ENV: str(directory)}


@dataclass(frozen=True)
class Stage:
    name: str
    facts: dict[str, int]
    snapshot: Path


def take(directory: Path, pid: int, stage: str, *, timeout: float = 300.0) -> Stage:
    """Ask the traced process `pid` for a snapshot named `stage`; wait until it is written."""
    (directory / "request").write_text(stage, encoding="utf-8")
    os.kill(pid, signal.SIGUSR2)
    target = directory / f"{stage}.snapshot"
    deadline = time.monotonic() + timeout
    while not target.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no tracemalloc snapshot {stage} from process {pid} in {timeout:.0f} s")
        time.sleep(0.2)
    facts = json.loads((directory / f"{stage}.json").read_text(encoding="utf-8"))
    return Stage(stage, facts, target)


def package(filename: str) -> str | None:
    """The top-level package a source file belongs to; None for the standard library."""
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for marker in _OURS_DIRS:
        if marker in filename:
            return marker.strip("/").split("/")[-1]
    return None


def group_of(name: str | None) -> str:
    if name is None:
        return STDLIB
    return _PACKAGE_GROUP.get(name, OTHER)


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/operator/", "/protos/", "/lib/python3."):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3." else tail
    return filename


@dataclass
class Heap:
    """One snapshot, attributed: bytes and blocks by group and by (site, owner)."""

    total: int
    by_group: Counter[str]
    by_package: Counter[str]
    by_site: Counter[tuple[str, str, str]]
    blocks_by_site: Counter[tuple[str, str, str]]

    @classmethod
    def read(cls, path: Path) -> Heap:
        snapshot = tracemalloc.Snapshot.load(str(path))
        by_group: Counter[str] = Counter()
        by_package: Counter[str] = Counter()
        by_site: Counter[tuple[str, str, str]] = Counter()
        blocks: Counter[tuple[str, str, str]] = Counter()
        total = 0
        for statistic in snapshot.statistics("traceback"):
            frames = list(reversed(statistic.traceback))  # innermost first
            owner = next((f for f in frames if package(f.filename) is not None), None)
            inner = frames[0]
            name = None if owner is None else package(owner.filename)
            group = group_of(name)
            site = f"{_short(inner.filename)}:{inner.lineno}"
            via = "" if owner is None or owner is inner else f"{_short(owner.filename)}:{owner.lineno}"
            asker = next(
                (f for f in frames if package(f.filename) in _ASKERS and not f.filename.endswith(_PLUMBING)),
                None,
            )
            caller = (
                "" if asker is None or asker in (owner, inner) else f"{_short(asker.filename)}:{asker.lineno}"
            )
            by_group[group] += statistic.size
            by_package[name or "stdlib"] += statistic.size
            by_site[(site, via, caller)] += statistic.size
            blocks[(site, via, caller)] += statistic.count
            total += statistic.size
        return cls(total, by_group, by_package, by_site, blocks)


def _mib(value: float) -> str:
    return f"{value / 2**20:+.1f}" if value < 0 else f"{value / 2**20:.1f}"


def _kib(value: float) -> str:
    return f"{value / 1024:.1f}"


@dataclass
class Analysis:
    """The snapshots read: per stage the attributed heap, the traced process's facts, and the RSS the
    native share is taken from (the untraced pass's, or the traced process's less tracemalloc's own)."""

    names: list[str]
    heaps: dict[str, Heap]
    facts: dict[str, dict[str, float]]
    rss: dict[str, float]
    untraced: bool

    def native(self, stage: str) -> float:
        return self.rss[stage] - self.heaps[stage].total

    def grown(self, stage: str, values: dict[str, float]) -> float:
        """Growth of `values` over the step that ends at `stage` (its size at the first stage)."""
        index = self.names.index(stage)
        return values[stage] - (values[self.names[index - 1]] if index else 0.0)

    def group_growth(self, stage: str) -> Counter[str]:
        index = self.names.index(stage)
        new = self.heaps[stage].by_group
        if not index:
            return Counter(new)
        old = self.heaps[self.names[index - 1]].by_group
        return Counter({group: new[group] - old.get(group, 0) for group in new})

    def top_sites(self, stage: str, count: int = TOP_SITES) -> list[tuple[tuple[str, str, str], int]]:
        """The sites (innermost frame, attributed frame, kopf/operator frame) that grew most in the step
        ending at `stage`, with their growth in bytes."""
        index = self.names.index(stage)
        new = self.heaps[stage].by_site
        old = self.heaps[self.names[index - 1]].by_site if index else Counter()
        return Counter({key: new[key] - old.get(key, 0) for key in new}).most_common(count)


def analyse(stages: Sequence[Stage], untraced_rss: dict[str, int] | None) -> Analysis:
    names = [stage.name for stage in stages]
    facts = {stage.name: {k: float(v) for k, v in stage.facts.items()} for stage in stages}
    if untraced_rss:
        rss = {n: float(untraced_rss[n]) for n in names}
    else:
        rss = {n: facts[n]["VmRSS"] - facts[n]["tracemalloc_own"] for n in names}
    heaps = {stage.name: Heap.read(stage.snapshot) for stage in stages}
    return Analysis(names, heaps, facts, rss, bool(untraced_rss))


def section(analysis: Analysis, *, routes: int, instances: int, command: str) -> RowResult:
    """The profile as a report section: heap by package per stage, top growing sites, native share."""
    heaps, facts, names = analysis.heaps, analysis.facts, analysis.names
    frames = int(facts[names[0]].get("frames", FRAMES))
    result = RowResult(
        title=f"Operator memory profile (tracemalloc): {instances:,} instances across {routes:,} routes",
        method=__doc__ or "",
    )
    per = {"routes": max(1, routes), "rollouts": max(1, instances)}
    unit = {"routes": "per route", "rollouts": "per instance"}
    header = ["package (innermost non-stdlib frame)", "no routes, MiB"]
    for name in names[1:]:
        header += [f"+ {STAGE_TITLES[name]}, MiB", f"KiB {unit[name]}"]
    groups = [*GROUPS, OTHER, STDLIB]

    def growth_cells(values: dict[str, float]) -> list[str]:
        cells = [_mib(values[names[0]])]
        for previous, name in itertools.pairwise(names):
            delta = values[name] - values[previous]
            cells += [_mib(delta), _kib(delta / per[name])]
        return cells

    rows = [[group, *growth_cells({n: float(heaps[n].by_group[group]) for n in names})] for group in groups]
    rows.append(["**traced Python heap, total**", *growth_cells({n: float(heaps[n].total) for n in names})])
    own = {n: facts[n]["tracemalloc_own"] for n in names}
    rows.append(["tracemalloc's own bookkeeping (traced pass only)", *growth_cells(own)])
    rows.append(["VmRSS of the traced process", *growth_cells({n: facts[n]["VmRSS"] for n in names})])
    in_use = {n: facts[n].get("malloc_in_use", 0.0) for n in names}
    free_held = {n: facts[n].get("malloc_free_held", 0.0) for n in names}
    rows.append(["glibc malloc: in use (traced process)", *growth_cells(in_use)])
    rows.append(["glibc malloc: freed but held (traced process)", *growth_cells(free_held)])
    if analysis.untraced:
        rows.append(["VmRSS of the untraced pass", *growth_cells(analysis.rss)])
        native = {n: analysis.native(n) for n in names}
        rows.append(["**native, not traced** (untraced pass's RSS minus traced heap)", *growth_cells(native)])
    else:
        result.notes.append(
            "No untraced pass in this run (--profile-only): the native share is not given, as the traced"
            " process's RSS is inflated by tracing well beyond tracemalloc's own bookkeeping."
        )
    result.tables.append((header, rows))

    site_rows: list[list[str]] = []
    for previous, name in itertools.pairwise(names):
        new, old = heaps[name], heaps[previous]
        for (site, via, caller), size in analysis.top_sites(name):
            key = (site, via, caller)
            blocks = new.blocks_by_site[key] - old.blocks_by_site.get(key, 0)
            site_rows.append(
                [
                    STAGE_TITLES[name],
                    f"`{site}`",
                    f"`{via}`" if via else "(itself)",
                    f"`{caller}`" if caller else "",
                    _mib(size),
                    f"{blocks:+,}",
                    _kib(size / per[name]),
                ]
            )
    result.tables.append(
        (
            [
                "step",
                "allocation site (innermost frame)",
                "attributed to",
                "on behalf of (innermost kopf or operator frame past kopf's HTTP wrappers)",
                "MiB",
                "blocks",
                "KiB per unit",
            ],
            site_rows,
        )
    )
    largest = heaps[names[0]].by_package.most_common(10)
    result.notes.append(
        "With no routes, the largest packages (innermost non-stdlib frame; an import is its importer's):"
        " " + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in largest) + "."
    )
    seconds = max(f.get("snapshot_seconds", 0.0) for f in facts.values())
    result.notes.append(
        f"Taken by `{command}`: traceback depth {frames} frames, snapshots in the operator process"
        f" (each took up to {seconds:.0f} s with the event loop paused; KiB per unit: per route for the"
        " routes step, per instance for the rollouts step)."
    )
    return result


def render(result: RowResult) -> str:
    """One result as a report section (for a run outside the full report)."""
    lines = [f"## {result.title}", ""]
    for header, rows in result.tables:
        lines += [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
        lines += [f"| {' | '.join(row)} |" for row in rows] + [""]
    return "\n".join(lines + result.notes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory_profile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--routes", type=int, default=200)
    parser.add_argument("--per-route", type=int, default=10)
    parser.add_argument("--profile-only", action="store_true", help="skip the untraced pass")
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--channels", type=int, default=0, help="also measure N warm channels alone")
    parser.add_argument("--keep", type=Path, help="copy the snapshots to this directory")
    args = parser.parse_args(argv)
    from bench import rss

    command = "python -m bench.memory_profile " + " ".join(sys.argv[1:] if argv is None else argv)
    results = rss.operator_memory(
        routes=args.routes,
        per_route=args.per_route,
        measure=not args.profile_only,
        frames=args.frames,
        command=command.strip(),
        channels=args.channels,
        keep=args.keep,
    )
    for result in results:
        print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
