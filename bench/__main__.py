"""`python -m bench [--quick] [--only ROWS]`: run the benchmarks, print figures, rewrite docs/benchmarks.md.

Full run (`make bench`): 70 minutes on a 2-core machine (40 on a faster one). `--quick`: smaller sizes and
shorter windows (about 15 minutes), said in the report. `--only ROWS` (a comma-separated subset of ROWS
below) runs a subset (the report then lists the others as not measured); with `--merge` the others are
reported from their last run, as committed in docs/benchmarks/rows.json (bench/rows_file.py) or cached on
this machine since. A run that writes docs/benchmarks.md writes that file too: commit them together.
`--base-operator PATH` adds another build's operator to the idle-memory row, measured side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench import rows_file
from bench.common import (
    Check,
    Machine,
    Row,
    RowResult,
    current_load,
    load_rows,
    machine,
    save_rows,
    say,
)

ROWS = (
    "fanout",
    "path",
    "scale",
    "rss",
    "idle",
    "getconfig",
    "polling",
    "local",
    "goapp",
    "load",
    "cold",
    "fleet",
)


def shown_command(command: str, *, quick: bool, ran: bool) -> str:
    """The command the report names: `make bench` for a plain run; the rows' own runs if none ran now."""
    if not ran:
        return f"`{command}`: report rendered again from the cached rows listed below"
    return f"`{'make bench' if command == 'python -m bench' else command}`" + (
        " (quick: reduced sizes)" if quick else ""
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@dataclass(frozen=True)
class Plan:
    fanout_sizes: list[int]
    fanout_runs: int
    path_sizes: list[int]
    path_changes: int
    idle_seconds: float
    scale_instances: int
    scale_changes: int
    rss_routes: int
    idle_runs: int
    getconfig_rounds: int
    getconfig_seconds: float
    poll_instances: int
    poll_plan: dict[float, int]
    local_changes: int = 50
    idle_speedup: int = 10  # the idle window runs the TTL net and resync this many times faster
    goapp_changes: int = 50  # PutParameter → the Go app (bench/app_path.py)
    goapp_poll_keys: int = 20
    goapp_poll_rounds: int = 3
    fanout_samples: int = 100  # warm rollouts per configuration in each of the fanout_runs runs
    load_first_seconds: float = 60.0  # the load row: RSS after this and after 3x this, at 50 changes/s
    cold_instances: int = 100
    cold_rounds: int = 5
    cold_idle_seconds: float = 5.0
    fleet_instances: int = 300
    fleet_changes: int = 20
    scale_runs: int = 5  # runs of scale_changes changes at each of the two concurrencies, alternating
    instance_calls: int = 1000  # the path row's direct Refresh calls to one instance (bench/instance_cost.py)


# polling: TTL → writes, spread 24 to a TTL (bench/polling.py): 30 s and 135 s of writes at full size
# path_sizes holds poll_instances: the staleness ratio compares push and polling on fleets of one size
FULL = Plan([10, 100, 1000], 5, [20, 100], 50, 180.0, 1000, 20, 1000, 3, 5, 2.0, 20, {5.0: 144, 45.0: 72})
QUICK = Plan([10, 100, 1000], 5, [10], 20, 60.0, 1000, 5, 100, 1, 2, 1.0, 10, {5.0: 48, 45.0: 24}, 20, 20)
# Each helper row's reduced sizes on a line of its own, so that rows added later merge cleanly.
QUICK = dataclasses.replace(QUICK, goapp_changes=10, goapp_poll_keys=10, goapp_poll_rounds=1)
QUICK = dataclasses.replace(QUICK, fanout_samples=10)
QUICK = dataclasses.replace(QUICK, load_first_seconds=20.0)
QUICK = dataclasses.replace(QUICK, cold_instances=10, cold_rounds=2, fleet_instances=30, fleet_changes=5)
QUICK = dataclasses.replace(QUICK, scale_runs=2)
QUICK = dataclasses.replace(QUICK, instance_calls=200)


def polling_result(polls: list[dict[str, Any]]) -> RowResult:
    from bench import polling

    result = RowResult(title="The alternative: TTL/polling cache", method=polling.__doc__ or "")
    rows = []
    for poll in polls:
        s, ttl = poll["staleness"], poll["ttl"]
        rows.append(
            [
                f"{ttl:g} s",
                f"{poll['instances']} x {poll['keys']} keys",
                f"{poll['writes']} in {poll['window_s']:.0f} s",
                f"{s.p50:.2f} s",
                f"{s.p99:.2f} s (low bound {s.p99_low:.2f} s)",
                f"{poll['last_p50_s']:.2f} / {poll['last_p99_s']:.2f} s",
                f"{s.resolution_p50 * 1000:.0f} ms",
                f"model: {polling.model(ttl, 50):.1f} / {polling.model(ttl, 99):.1f} s",
                f"{poll['reads']} in {poll['minutes']:.1f} min",
                f"{poll['reads_per_minute']:.0f} ({poll['reads_per_minute'] / poll['instances']:.1f}"
                " per instance)",
            ]
        )
    result.tables.append(
        (
            [
                "TTL",
                "instances x parameters",
                "writes",
                "staleness p50 (per instance)",
                "p99",
                "last instance p50 / p99",
                "probe resolution (median)",
                "p50 / p99 by the uniform-phase MODEL",
                "Parameter Store reads",
                "reads / min",
            ],
            rows,
        )
    )
    return result


def staleness_check(
    push: dict[str, Any], polls: list[dict[str, Any]], *, same_run: bool = True
) -> Check | None:
    """Push against the 45 s polling cache, both measured by the same probe on fleets of the same size
    (push's largest fleet beside it): the slow side's low bound over the fast side's high bound,
    per-instance p99s."""
    from bench.report import push_fleets, push_side
    from bench.targets import STALENESS_RATIO

    slow = [p for p in polls if p["ttl"] == 45.0 and "staleness" in p]
    if "staleness" not in push or not slow:
        return None
    poll, instances = slow[0]["staleness"], slow[0]["instances"]
    pushed = push_fleets(push)
    size, fast = push_side(pushed, instances)
    ratio = poll.p99_low / fast.p99
    others = "".join(
        f"; at {other_size} instances push {other.p99 * 1000:.0f} ms over {other.samples} samples:"
        f" {poll.p99_low / other.p99:,.0f}x"
        for other_size, other in pushed.items()
        if other_size != size
    )
    sizes = "the same fleet size" if size == instances else f"push {size}, polling {instances} instances"
    return Check(
        what="staleness against a 45 s polling cache" + (", same run" if same_run else ", two runs"),
        target=f"≥ {STALENESS_RATIO:g} x lower p99",
        measured=(
            f"{ratio:,.0f}x lower p99 per instance at {sizes} (push {fast.p99 * 1000:.0f} ms over"
            f" {fast.samples} samples, {size} instances; 45 s poll {poll.p99_low:.1f} s over"
            f" {poll.samples} samples, {instances} instances){others}; both measured by the GetConfig"
            " probe; no EventBridge delivery on the push side"
        ),
        met=ratio >= STALENESS_RATIO,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes and shorter windows")
    parser.add_argument("--only", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="report the rows not run now from their last run: docs/benchmarks/rows.json (the committed"
        " report's rows) or this machine's cache, whichever is newer",
    )
    parser.add_argument(
        "--base-operator", type=Path, help="another build's config-refresh-operator, for the idle-memory row"
    )
    parser.add_argument("--out", type=Path, default=rows_file.REPORT, help="report to write")
    args = parser.parse_args(argv)
    only = [row for row in args.only.split(",") if row]
    unknown = set(only) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    plan = QUICK if args.quick else FULL
    # Stacks must be torn down on Ctrl-C or SIGTERM, also when started in the background (SIGINT ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    plots = args.out.parent / "benchmarks"
    plots.mkdir(parents=True, exist_ok=True)
    command = "python -m bench" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    host = machine()
    say(f"{command}: {host.cpus} CPUs, {host.memory_gib:.1f} GiB, commit {host.commit}, load {host.load}")

    failures: list[str] = []
    # every row's last run (a partial run replaces only its rows): the committed ones, or this machine's
    cache = load_rows(quick=True) if args.quick else rows_file.newest(rows_file.load(), load_rows())
    stored: dict[str, Row] = dict(cache) if args.merge else {}

    def attempt(name: str, body: Callable[[], Row]) -> None:
        if name not in only:
            return
        say(f"\n== {name} ==")
        started = time.monotonic()
        try:
            stored[name] = body()
            stored[name].when = f"{host.date}, {command}"
            stored[name].machine = dataclasses.replace(host, load_end=current_load())
            cache.update(rows_file.newest(cache, load_rows(quick=args.quick)))  # another run's rows kept
            cache[name] = stored[name]
            save_rows(cache, quick=args.quick)
        except Exception as exc:  # a row that breaks is reported, the others still run
            traceback.print_exc()
            failures.append(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0][:300])
        say(f"== {name}: {time.monotonic() - started:.0f} s ==")

    def fanout_row() -> Row:
        from bench import fanout

        sizes, runs, samples = plan.fanout_sizes, plan.fanout_runs, plan.fanout_samples
        return Row([fanout.run(sizes=sizes, runs=runs, samples=samples, plots=plots)])

    def path_row() -> Row:
        from bench import path

        result, extra = path.run(
            sizes=plan.path_sizes,
            changes=plan.path_changes,
            idle_seconds=plan.idle_seconds,
            idle_speedup=plan.idle_speedup,
            plots=plots,
            instance_calls=plan.instance_calls,
        )
        return Row([result], push={**extra, "fleet": plan.path_sizes[-1]})

    def scale_row() -> Row:
        from bench import scale

        result, extra = scale.push_at_scale(
            instances=plan.scale_instances, changes=plan.scale_changes, runs=plan.scale_runs
        )
        return Row(
            [result], push={"reads_per_change_scale": {plan.scale_instances: extra["reads_per_change"]}}
        )

    def rss_row() -> Row:
        from bench import rss

        return Row(rss.operator_memory(routes=plan.rss_routes, per_route=10))

    def idle_row() -> Row:
        from bench import operator_memory

        return Row([operator_memory.run(runs=plan.idle_runs, base_operator=args.base_operator)])

    def getconfig_row() -> Row:
        from bench import getconfig

        return Row([getconfig.run(rounds=plan.getconfig_rounds, seconds=plan.getconfig_seconds)])

    def polling_row() -> Row:
        from bench import polling

        polls = polling.run(instances=plan.poll_instances, plan=plan.poll_plan)
        return Row([polling_result(polls)], polls=polls)

    def local_row() -> Row:
        from bench import local_delivery

        return Row([local_delivery.run(changes=plan.local_changes)])

    def goapp_row() -> Row:
        from bench import app_path

        return Row(
            [
                app_path.run(
                    changes=plan.goapp_changes, keys=plan.goapp_poll_keys, rounds=plan.goapp_poll_rounds
                )
            ]
        )

    def cold_row() -> Row:
        from bench import cold

        return Row(
            [
                cold.run(
                    instances=plan.cold_instances,
                    cold=plan.cold_rounds,
                    warm=3,
                    idle_seconds=plan.cold_idle_seconds,
                )
            ]
        )

    def load_row() -> Row:
        from bench import load

        return Row([load.run(instances=100, rate=50, keys=20, first=plan.load_first_seconds)])

    def fleet_row() -> Row:
        from bench import fleet

        return Row([fleet.run(instances=plan.fleet_instances, changes=plan.fleet_changes)])

    started = time.monotonic()
    attempt("fanout", fanout_row)
    attempt("path", path_row)
    attempt("scale", scale_row)
    attempt("rss", rss_row)
    attempt("idle", idle_row)
    attempt("getconfig", getconfig_row)
    attempt("polling", polling_row)
    attempt("local", local_row)
    attempt("goapp", goapp_row)
    attempt("load", load_row)
    attempt("cold", cold_row)
    attempt("fleet", fleet_row)

    results: list[RowResult] = []
    push: dict[str, Any] = {}
    polls: list[dict[str, Any]] = []
    provenance: list[str] = []
    measured_on: Machine | None = None
    runs: dict[str, tuple[Machine | None, list[str]]] = {}  # by when and how a row was run
    for name in ROWS:
        row = stored.get(name)
        if row is None:
            continue
        results += row.results
        push.update(row.push)
        polls += row.polls
        row_machine = getattr(row, "machine", None)
        provenance.append(f"{name}: {row.when}" + (f" at {row_machine.commit}" if row_machine else ""))
        runs.setdefault(row.when, (row_machine, []))[1].append(name)
        measured_on = row_machine or measured_on
    # the headline's two sides, push (path row) and polling, are one comparison only if one run made both
    pair = {stored[name].when for name in ("path", "polling") if name in stored}

    from bench.report import headline, write

    checks: list[Check] = [check for result in results for check in result.checks]
    reads = dict(push.get("reads_per_change", {}))
    reads.update(push.get("reads_per_change_scale", {}))
    if reads:
        worst = max(reads.values())
        checks.append(
            Check(
                what="Parameter Store reads per change",
                target="1, whatever the fleet size",
                measured=", ".join(f"{v:.2f} at {k:,} instances" for k, v in sorted(reads.items())),
                met=all(abs(v - 1.0) < 1e-9 for v in reads.values()) and worst == 1.0,
            )
        )
    same_run = len(pair) == 1
    text, plot = headline(push, polls, plots)
    if not same_run and pair:
        text += (
            "\n\nThe two sides come from two runs on this machine (path row and polling row: "
            + "; ".join(f"{name}: {stored[name].when}" for name in ("path", "polling") if name in stored)
            + "), each measured by the same probe."
        )
    ratio = staleness_check(push, polls, same_run=same_run)
    if ratio is not None:
        checks.append(ratio)
    write(
        out=args.out,
        machine=measured_on or host,
        command=shown_command(command, quick=args.quick, ran=bool(only)),
        results=results,
        checks=checks,
        headline_text=text,
        headline_plot=plot,
        failures=failures,
        provenance=provenance,
        runs=[(when, run_machine, names) for when, (run_machine, names) in runs.items()],
        same_run=same_run,
    )
    if not args.quick and args.out.resolve() == rows_file.REPORT.resolve():
        rows_file.dump({name: stored[name] for name in ROWS if name in stored})
    say(f"\nwrote {args.out} in {time.monotonic() - started:.0f} s total")
    say(
        "\n".join(
            f"  {'MET    ' if c.met else 'NOT MET' if c.met is False else '?      '} {c.what}: {c.measured}"
            f" (target {c.target})"
            for c in checks
        )
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
