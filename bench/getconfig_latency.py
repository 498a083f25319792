"""GetConfig latency, quiet versus during refresh storms of stated rates, measured in one run.

Why: the service promises that readers never wait on a refresh (targets table, docs/benchmarks.md:
GetConfig p99 during a storm of 200 refreshes/s <= 1.1 x quiet p99). This starts the local AWS stack and one
real `config-service` process, loads it with parameters, then measures GetConfig from a client process for
the same duration in a quiet phase and in one phase per storm rate, while a storm process pushes
refreshes (VALUE mode, new versions across all parameters) at that rate (`--storm-rates 200,0`: 200/s, and
as fast as the instance acknowledges). The phases alternate within every round (the storm processes are
paused with SIGSTOP outside their phase) so that load from elsewhere on the machine hits all alike. It
prints p50/p90/p99/max, the refreshes applied per second, and the instance's CPU during the reads.

The control phases ("... on another instance"): the first rate's storm aimed at a second config-service
process on the same machine while the readers read the measured one, back to back and paced. The storm's
client and that other instance's Refresh work share the 2 cores as in the storm phase, but nothing runs on
the measured instance's event loop: what the storm phase adds beyond its control is the measured
instance's own share; the control's ratio to quiet is the machine's.

`--base-service DIR` starts a second instance from another build's `config_service` package (DIR holds
it, e.g. `git archive REV config_service | tar -x -C DIR`) and alternates both in the same rounds: a
before/after comparison in one run. `--profile DIR` then samples each instance with py-spy (only the
thread holding the GIL, native frames included: the process is paused per sample, so this comes after the
measured rounds) while the first storm rate runs and readers read, and prints where the time goes.

    .venv/bin/python bench/getconfig_latency.py [--rounds 5] [--seconds 2] [--readers 8] [--parameters 500]
        [--storm-rates 200,0] [--paced-reads 1000] [--base-service DIR] [--profile DIR]

The numbers are loopback numbers on a shared 2-core machine: compare the phases of one run, not runs
with each other. Nothing here is asserted by a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hack"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.pyspy

from bench.common import cpu_seconds as process_cpu_seconds
from bench.getconfig import ELSEWHERE
from configrefresh.v1 import config_service_pb2 as cpb
from configrefresh.v1 import config_service_pb2_grpc as cpb_grpc
from configrefresh.v1 import refresh_service_pb2 as rpb
from configrefresh.v1 import refresh_service_pb2_grpc as rpb_grpc


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def read_phase(
    address: str, names: list[str], readers: int, seconds: float, rate: float = 0.0
) -> list[float]:
    """GetConfig in `readers` concurrent loops for `seconds`; returns latencies in seconds.

    `rate` > 0 paces the loops to that many reads per second in all (each loop starts a call every
    readers / rate seconds, or at once when its last call came back late); 0 reads back to back, which
    keeps the instance saturated."""
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = cpb_grpc.ConfigServiceStub(channel)
        await stub.GetConfig(cpb.GetConfigRequest(name=names[0]), timeout=5)  # warm the channel
        stop_at = time.monotonic() + seconds

        async def reader(offset: int) -> None:
            nonlocal errors
            index = offset
            interval = readers / rate if rate > 0 else 0.0
            # Loops start spread over one interval, so paced calls do not arrive in bursts of `readers`.
            next_at = time.monotonic() + interval * offset / readers
            while time.monotonic() < stop_at:
                if interval:
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                    next_at = max(next_at + interval, time.monotonic())
                name = names[index % len(names)]
                index += readers
                started = time.perf_counter()
                try:
                    await stub.GetConfig(cpb.GetConfigRequest(name=name), timeout=5)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(reader(i) for i in range(readers)))
    if errors:
        print(f"  {errors} GetConfig errors", file=sys.stderr)
    return latencies


async def storm(address: str, names: list[str], seconds: float, concurrency: int, rate: float) -> int:
    """Push refreshes with ever newer versions for `seconds` (at most `rate` per second if > 0)."""
    applied = 0
    # Versions and modification times come from the clock (a day ahead of Parameter Store's), so a push
    # is newer than anything the instance holds, also when several storm processes take turns on it: each
    # push is applied, none answered stale.
    version = time.time_ns() // 1000
    async with grpc.aio.insecure_channel(address) as channel:
        stub = rpb_grpc.RefreshServiceStub(channel)
        await channel.channel_ready()
        print("ready", flush=True)  # the parent pauses this process only once it can push at once
        stop_at = time.monotonic() + seconds

        async def pusher() -> None:
            nonlocal applied, version
            interval = concurrency / rate if rate > 0 else 0.0
            next_at = time.monotonic()
            while time.monotonic() < stop_at:
                if interval:
                    # No catching up after a pause (SIGSTOP): the rate stays the rate.
                    next_at = max(next_at + interval, time.monotonic())
                    await asyncio.sleep(next_at - time.monotonic())
                version = max(version + 1, time.time_ns() // 1000)
                request = rpb.RefreshRequest(
                    refresh_id="bench",
                    parameter_name=names[version % len(names)],
                    version=version,
                    operation=rpb.OPERATION_UPSERT,
                    value=f"value-{version}",
                )
                request.last_modified.FromDatetime(
                    datetime.fromtimestamp(version / 1e6, UTC) + timedelta(days=1)
                )
                try:
                    answer = await stub.Refresh(request, timeout=10)
                except grpc.aio.AioRpcError:
                    continue  # a call in flight across a pause (SIGSTOP) outlives its deadline
                applied += answer.result == rpb.REFRESH_RESULT_APPLIED

        await asyncio.gather(*(pusher() for _ in range(concurrency)))
    return applied


def applied_refreshes(scrape: str) -> float:
    """config_service_refreshes_total{result="applied"} summed over modes, from one scrape."""
    total = 0.0
    for line in scrape.splitlines():
        if line.startswith("config_service_refreshes_total{") and 'result="applied"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def latency_buckets(scrape: str) -> dict[float, float]:
    """The GetConfig histogram's cumulative bucket counts by upper bound, from one scrape."""
    buckets: dict[float, float] = {}
    for line in scrape.splitlines():
        if line.startswith("config_service_getconfig_latency_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_quantile(delta: dict[float, float], fraction: float) -> float:
    """A quantile from cumulative bucket counts, interpolated linearly inside its bucket (seconds)."""
    bounds = sorted(delta)
    total = delta[bounds[-1]]
    if total == 0:
        return 0.0
    wanted = fraction * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        if delta[bound] >= wanted:
            if bound == float("inf"):
                return lower
            inside = delta[bound] - below
            return lower + (bound - lower) * ((wanted - below) / inside if inside else 1.0)
        lower, below = bound, delta[bound]
    return lower


def add_delta(total: dict[float, float], before: dict[float, float], after: dict[float, float]) -> None:
    for bound, count in after.items():
        total[bound] = total.get(bound, 0.0) + count - before.get(bound, 0.0)


def summary(label: str, samples: list[float], seconds: float) -> dict[str, float]:
    figures = {
        "calls": len(samples),
        "rps": len(samples) / seconds,
        "p50_ms": percentile(samples, 0.50) * 1000,
        "p90_ms": percentile(samples, 0.90) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "max_ms": max(samples) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
    }
    print(
        f"{label:>14}: {figures['calls']:7.0f} calls {figures['rps']:7.0f}/s  "
        f"p50 {figures['p50_ms']:.3f} ms  p90 {figures['p90_ms']:.3f} ms  "
        f"p99 {figures['p99_ms']:.3f} ms  max {figures['max_ms']:.1f} ms"
    )
    return figures


def rate_label(rate: float) -> str:
    return f"storm {rate:g}/s" if rate > 0 else "storm max"


class Target:
    """One instance under measurement, with one paused storm process per storm rate."""

    def __init__(
        self,
        label: str,
        instance: Any,
        stormers: dict[float, subprocess.Popen[bytes]],
        bystander: tuple[Any, subprocess.Popen[bytes]],
    ) -> None:
        """`bystander`: another config-service process on the same machine and a storm process aimed at
        it, for the control phases (the storm's load on the machine, none on this instance's loop)."""
        self.label = label
        self.instance = instance
        self.stormers = stormers
        self.bystander, self.bystander_stormer = bystander
        self.samples: dict[str, list[float]] = {}
        self.server: dict[str, dict[float, float]] = {}
        self.applied: dict[str, float] = {}
        self.storm_seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # the instance's CPU seconds during the measured reads

    def cpu_seconds(self) -> float:
        """The instance's CPU time so far, every thread (its CPU-time clock, in ns rather than ticks)."""
        return process_cpu_seconds(self.instance.pid)

    def phase(
        self,
        name: str,
        names: list[str],
        args: argparse.Namespace,
        rate: float | None,
        read_rate: float = 0.0,
        *,
        elsewhere: bool = False,
    ) -> None:
        """Read for `args.seconds` (paced at `read_rate`, or back to back), quiet (rate None) or with the
        storm of `rate` running: at this instance, or `elsewhere` (at the bystander, the control)."""
        stormer: subprocess.Popen[bytes] | None = None
        stormed = self.bystander if elsewhere else self.instance
        if elsewhere:
            stormer = self.bystander_stormer
        elif rate is not None:
            stormer = self.stormers[rate]
        applied_before = applied_refreshes(stormed.metrics_text())
        started = time.monotonic()
        if stormer is not None:
            stormer.send_signal(signal.SIGCONT)
            time.sleep(1.0)  # the storm reaches full speed before measuring
        before = latency_buckets(self.instance.metrics_text())
        cpu = self.cpu_seconds()
        self.samples.setdefault(name, []).extend(
            asyncio.run(
                read_phase(self.instance.config_address, names, args.readers, args.seconds, read_rate)
            )
        )
        self.cpu[name] = self.cpu.get(name, 0.0) + self.cpu_seconds() - cpu
        add_delta(self.server.setdefault(name, {}), before, latency_buckets(self.instance.metrics_text()))
        if stormer is not None:
            stormer.send_signal(signal.SIGSTOP)
            self.applied[name] = (
                self.applied.get(name, 0.0) + applied_refreshes(stormed.metrics_text()) - applied_before
            )
            self.storm_seconds[name] = self.storm_seconds.get(name, 0.0) + time.monotonic() - started


def stormer_lifetime(args: argparse.Namespace, rates: int, builds: int) -> float:
    """Seconds a storm process must outlive: it is paused, not stopped, outside its phases, so its clock
    runs through every phase of every build (a round has a quiet phase, one per rate, the control storm
    elsewhere, and with paced reads two paced ones and a paced control), the per-call phases and the
    profile; past that it ends by itself should this process die."""
    phases = 1 + rates + 1 + (3 if args.paced_reads else 0)
    per_build = int(args.rounds) * phases * (float(args.seconds) + 1.0) + 6.0 + float(args.profile_seconds)
    return per_build * builds + 60.0


def start_stormer(
    address: str, names_file: Path, args: argparse.Namespace, rate: float, lifetime: float
) -> subprocess.Popen[bytes]:
    stormer = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--storm",
            address,
            "--names-file",
            str(names_file),
            "--seconds",
            str(lifetime),
            "--storm-concurrency",
            str(args.storm_concurrency),
            "--storm-rate",
            str(rate),
        ],
        stdout=subprocess.PIPE,
    )
    assert stormer.stdout is not None
    if stormer.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"the storm process for {rate:g}/s did not start")
    stormer.send_signal(signal.SIGSTOP)
    return stormer


def per_call(target: Target, names: list[str], args: argparse.Namespace, rate: float) -> None:
    """The instance's CPU per call, each kind alone: the storm of `rate` for 3 s (no reads), then the
    readers for 3 s (no storm). Printed, not part of the phases above."""
    stormer = target.stormers[rate]
    cpu, applied = target.cpu_seconds(), applied_refreshes(target.instance.metrics_text())
    storm_cpu = process_cpu_seconds(stormer.pid)
    stormer.send_signal(signal.SIGCONT)
    time.sleep(3.0)
    stormer.send_signal(signal.SIGSTOP)
    refreshes = applied_refreshes(target.instance.metrics_text()) - applied
    refresh_cpu = target.cpu_seconds() - cpu
    storm_cpu = process_cpu_seconds(stormer.pid) - storm_cpu
    cpu = target.cpu_seconds()
    reads = len(asyncio.run(read_phase(target.instance.config_address, names, args.readers, 3.0)))
    read_cpu = target.cpu_seconds() - cpu
    print(
        f"per call ({target.label}): Refresh {refresh_cpu / max(refreshes, 1) * 1e6:.0f} us of instance CPU"
        f" ({refreshes:.0f} at {rate_label(rate)}, alone), GetConfig {read_cpu / max(reads, 1) * 1e6:.0f} us"
        f" ({reads} by {args.readers} readers, alone)"
    )
    print(
        f"storm process ({target.label}): {storm_cpu / max(refreshes, 1) * 1e6:.0f} us of its own CPU per"
        f" Refresh pushed ({storm_cpu / 3.0:.0%} of a core at {rate_label(rate)})"
    )


PROFILE_BUCKETS = (  # the first bucket whose marker is in a stack takes it: handlers before machinery
    ("GetConfig handler", ("config_servicer.py",)),
    ("logging (the refresh log line)", ("logging/__init__.py", "config_service/logs.py")),
    ("Refresh handler (validate, apply, swap)", ("refresh_servicer.py", "refresher.py")),
    ("prometheus metrics", ("prometheus_client",)),
    ("gRPC aio server machinery (both services)", ("grpc/_cython", "cygrpc", "grpc/aio")),
    ("asyncio event loop", ("asyncio/",)),
)


def profile(target: Target, names: list[str], args: argparse.Namespace, rate: float, out: Path) -> None:
    """py-spy the instance while the storm of `rate` runs and readers read; print where the time goes."""
    from bench import pyspy

    pid = target.instance.pid
    stormer = target.stormers[rate]
    stormer.send_signal(signal.SIGCONT)
    try:
        time.sleep(1.0)
        spy: dict[str, Path | None] = {}
        thread = threading.Thread(
            target=lambda: spy.update(raw=pyspy.record(pid, args.profile_seconds, out, native=True)),
            daemon=True,
        )
        thread.start()
        asyncio.run(
            read_phase(
                target.instance.config_address,
                names,
                args.readers,
                args.profile_seconds,
            )
        )
        thread.join(args.profile_seconds + 60)
    finally:
        stormer.send_signal(signal.SIGSTOP)
    raw = spy.get("raw")
    if raw is None:
        print("profile: py-spy not available or failed")
        return
    print(f"profile ({target.label}, {rate_label(rate)} + readers, {pyspy.samples(raw)} samples, {raw}):")
    for label, share in pyspy.shares(raw, PROFILE_BUCKETS):
        print(f"{'':>14}  {share:6.1%}  {label}")
    print(f"{'':>14}  top own time:")
    for frame, share in pyspy.top_own(raw):
        print(f"{'':>14}  {share:6.1%}  {frame}")


def run(args: argparse.Namespace) -> int:
    from devstack.aws.local_aws import LocalAws
    from devstack.services.fleet import ServiceFleet

    workdir = Path(tempfile.mkdtemp(prefix="getconfig-bench-"))
    load_at_start = os.getloadavg()
    aws = LocalAws.start(log_path=workdir / "moto.log")
    fleets: list[ServiceFleet] = []
    targets: list[Target] = []
    rates = [float(rate) for rate in args.storm_rates.split(",")]
    control = f"{rate_label(rates[0])} {ELSEWHERE}"  # the control phases' name
    try:
        ssm = aws.client("ssm")
        names = [f"{aws.prefix}bench/p{i:04d}" for i in range(args.parameters)]
        for name in names:
            ssm.put_parameter(Name=name, Value="initial", Type="String")
        builds: list[tuple[str, dict[str, str]]] = [("this build", {})]
        if args.base_service:
            # PYTHONPATH goes before the editable install: that process imports the other config_service.
            builds.append(("base build", {"PYTHONPATH": str(args.base_service)}))
        bystander_fleet = ServiceFleet(
            1,
            local_aws=aws,
            workdir=workdir / "bystander",
            env={"CONFIG_SERVICE_TTL_SECONDS": "0"},
            first_index=len(builds),
            id_prefix="bystander",
        )
        fleets.append(bystander_fleet)
        bystander_fleet.start()
        for index, (_label, env) in enumerate(builds):
            fleet = ServiceFleet(
                1,
                local_aws=aws,
                workdir=workdir / f"fleet-{index}",
                env={"CONFIG_SERVICE_TTL_SECONDS": "0", **env},
                first_index=index,
                id_prefix=f"svc{index}",
            )
            fleets.append(fleet)
            fleet.start()
        names_file = workdir / "names.json"
        names_file.write_text(json.dumps(names))
        lifetime = stormer_lifetime(args, len(rates), len(builds))
        bystander_fleet.wait_serving()
        bystander = bystander_fleet[0]
        bystander_stormer = start_stormer(bystander.refresh_address, names_file, args, rates[0], lifetime)
        for fleet, (label, _) in zip(fleets[1:], builds, strict=True):
            fleet.wait_serving()
            instance = fleet[0]
            print(
                f"{label}: instance {instance.config_address}, {len(names)} parameters,"
                f" {args.readers} readers"
            )
            asyncio.run(read_phase(instance.config_address, names, args.readers, 1.0))  # warm-up, discarded
            stormers = {
                rate: start_stormer(instance.refresh_address, names_file, args, rate, lifetime)
                for rate in rates
            }
            targets.append(Target(label, instance, stormers, (bystander, bystander_stormer)))
        try:
            # Alternate short phases (and builds) so that load from elsewhere on the machine hits all alike.
            for _ in range(args.rounds):
                for target in targets:
                    target.phase("quiet", names, args, None)
                    for rate in rates:
                        target.phase(rate_label(rate), names, args, rate)
                    target.phase(control, names, args, rates[0], elsewhere=True)
                    if args.paced_reads:
                        target.phase("paced quiet", names, args, None, args.paced_reads)
                        target.phase(f"paced {rate_label(rates[0])}", names, args, rates[0], args.paced_reads)
                        target.phase(
                            f"paced {control}", names, args, rates[0], args.paced_reads, elsewhere=True
                        )
            for target in targets:
                per_call(target, names, args, rates[0])
            if args.profile:
                for target in targets:
                    out = Path(args.profile) / f"getconfig-{target.label.replace(' ', '-')}.txt"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    profile(target, names, args, rates[0], out)
        finally:
            for stormer in [bystander_stormer, *(s for t in targets for s in t.stormers.values())]:
                stormer.send_signal(signal.SIGCONT)
                stormer.terminate()
                stormer.wait(30)
        for target in targets:
            print(f"\n[{target.label}]")
            quiet = summary("quiet", target.samples["quiet"], args.rounds * args.seconds)
            phases = [(quiet, rate_label(rate)) for rate in rates] + [(quiet, control)]
            if args.paced_reads:
                print(f"{'paced reads':>14}: {args.paced_reads:g}/s in all, by {args.readers} readers")
                paced = summary("paced quiet", target.samples["paced quiet"], args.rounds * args.seconds)
                phases += [(paced, f"paced {rate_label(rates[0])}"), (paced, f"paced {control}")]
            for quiet_figures, label in phases:
                figures = summary(label, target.samples[label], args.rounds * args.seconds)
                print(
                    f"{'refreshes':>14}: {label}: {target.applied[label]:.0f} applied"
                    f" ({target.applied[label] / target.storm_seconds[label]:.0f}/s)"
                )
                print(
                    f"{'client ratio':>14}: {label}: p50 x{figures['p50_ms'] / quiet_figures['p50_ms']:.2f},"
                    f" p99 x{figures['p99_ms'] / quiet_figures['p99_ms']:.2f}"
                )
            measured = args.rounds * args.seconds
            print(
                f"{'instance CPU':>14}: "
                + ", ".join(f"{label} {cpu / measured:.0%} of a core" for label, cpu in target.cpu.items())
            )
            print("in the servicer (config_service_getconfig_latency_seconds, interpolated in buckets):")
            for label, delta in target.server.items():
                print(
                    f"{label:>14}: p50 {bucket_quantile(delta, 0.5) * 1e6:.0f} us  "
                    f"p99 {bucket_quantile(delta, 0.99) * 1e6:.0f} us"
                )
        print(f"{'load average':>14}: {load_at_start} at the start, {os.getloadavg()} at the end")
        return 0
    finally:
        for fleet in fleets:
            fleet.close()
        aws.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each measured phase")
    parser.add_argument("--rounds", type=int, default=5, help="quiet/storm phase pairs, alternated")
    parser.add_argument("--readers", type=int, default=8, help="concurrent GetConfig loops")
    parser.add_argument(
        "--paced-reads",
        type=float,
        default=0.0,
        help="also a quiet and a first-rate storm phase with reads paced at this many per second in all",
    )
    parser.add_argument("--parameters", type=int, default=500, help="parameters loaded in the instance")
    parser.add_argument("--storm-concurrency", type=int, default=4, help="concurrent Refresh loops")
    parser.add_argument(
        "--storm-rates",
        default="200,0",
        help="storm phases, refreshes per second each; 0: as fast as the instance acknowledges",
    )
    parser.add_argument("--storm-rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy the instance during a storm; raw stacks here"
    )
    parser.add_argument("--profile-seconds", type=float, default=10.0, help="length of the profiled phase")
    parser.add_argument(
        "--base-service",
        type=Path,
        help="a directory holding another build's config_service, measured beside",
    )
    parser.add_argument("--storm", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--names-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.storm:
        names = json.loads(Path(args.names_file).read_text())
        print(asyncio.run(storm(args.storm, names, args.seconds, args.storm_concurrency, args.storm_rate)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
