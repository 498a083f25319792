"""GetConfig latency, quiet versus during a refresh storm, measured in one run.

Why: the service promises that readers never wait on a refresh (targets table, docs/benchmarks.md:
GetConfig p99 during a refresh storm <= 1.1 x quiet p99). This starts the local AWS stack and one real
`config-service` process, loads it with parameters, then measures GetConfig from a client process twice
for the same duration: once quiet, once while a second client process pushes refreshes (VALUE mode, new
versions across all parameters) as fast as the instance acknowledges them. Quiet and storm phases
alternate (the storm process is paused with SIGSTOP between them) so that load from elsewhere on the
machine hits both alike. It prints p50/p90/p99/max for both and the ratios.

    .venv/bin/python bench/getconfig_latency.py [--rounds 5] [--seconds 2] [--readers 8] [--parameters 500]

The numbers are loopback numbers on a shared 2-core machine: compare the two phases of one run, not runs
with each other. Nothing here is asserted by a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hack"))

from configrefresh.v1 import config_service_pb2 as cpb
from configrefresh.v1 import config_service_pb2_grpc as cpb_grpc
from configrefresh.v1 import refresh_service_pb2 as rpb
from configrefresh.v1 import refresh_service_pb2_grpc as rpb_grpc


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def read_phase(address: str, names: list[str], readers: int, seconds: float) -> list[float]:
    """GetConfig in `readers` concurrent loops for `seconds`; returns latencies in seconds."""
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = cpb_grpc.ConfigServiceStub(channel)
        await stub.GetConfig(cpb.GetConfigRequest(name=names[0]), timeout=5)  # warm the channel
        stop_at = time.monotonic() + seconds

        async def reader(offset: int) -> None:
            nonlocal errors
            index = offset
            while time.monotonic() < stop_at:
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
    base = datetime.now(UTC) + timedelta(days=1)
    version = 1
    async with grpc.aio.insecure_channel(address) as channel:
        stub = rpb_grpc.RefreshServiceStub(channel)
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
                version += 1
                request = rpb.RefreshRequest(
                    refresh_id="bench",
                    parameter_name=names[version % len(names)],
                    version=version,
                    operation=rpb.OPERATION_UPSERT,
                    value=f"value-{version}",
                )
                request.last_modified.FromDatetime(base + timedelta(milliseconds=version))
                answer = await stub.Refresh(request, timeout=10)
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


def run(args: argparse.Namespace) -> int:
    from devstack.aws.local_aws import LocalAws
    from devstack.services.fleet import ServiceFleet

    workdir = Path(tempfile.mkdtemp(prefix="getconfig-bench-"))
    aws = LocalAws.start(log_path=workdir / "moto.log")
    fleet: ServiceFleet | None = None
    try:
        ssm = aws.client("ssm")
        names = [f"{aws.prefix}bench/p{i:04d}" for i in range(args.parameters)]
        for name in names:
            ssm.put_parameter(Name=name, Value="initial", Type="String")
        fleet = ServiceFleet(
            1, local_aws=aws, workdir=workdir / "fleet", env={"CONFIG_SERVICE_TTL_SECONDS": "0"}
        )
        fleet.start()
        fleet.wait_serving()
        instance = fleet[0]
        print(f"instance {instance.config_address}, {len(names)} parameters, {args.readers} readers")

        asyncio.run(read_phase(instance.config_address, names, args.readers, 1.0))  # warm-up, discarded
        names_file = workdir / "names.json"
        names_file.write_text(json.dumps(names))
        total = args.rounds * (args.seconds + 1.0) + 30
        stormer = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--storm",
                instance.refresh_address,
                "--names-file",
                str(names_file),
                "--seconds",
                str(total),
                "--storm-concurrency",
                str(args.storm_concurrency),
                "--storm-rate",
                str(args.storm_rate),
            ],
            stdout=subprocess.DEVNULL,
        )
        stormer.send_signal(signal.SIGSTOP)
        applied_before = applied_refreshes(instance.metrics_text())
        quiet: list[float] = []
        stormy: list[float] = []
        quiet_server: dict[float, float] = {}
        storm_server: dict[float, float] = {}
        try:
            # Alternate short phases so that load from elsewhere on the machine hits both alike.
            for _ in range(args.rounds):
                before = latency_buckets(instance.metrics_text())
                quiet += asyncio.run(read_phase(instance.config_address, names, args.readers, args.seconds))
                add_delta(quiet_server, before, latency_buckets(instance.metrics_text()))
                stormer.send_signal(signal.SIGCONT)
                time.sleep(1.0)  # the storm reaches full speed before measuring
                before = latency_buckets(instance.metrics_text())
                stormy += asyncio.run(read_phase(instance.config_address, names, args.readers, args.seconds))
                add_delta(storm_server, before, latency_buckets(instance.metrics_text()))
                stormer.send_signal(signal.SIGSTOP)
        finally:
            stormer.send_signal(signal.SIGCONT)
            stormer.terminate()
            stormer.wait(30)
        applied = applied_refreshes(instance.metrics_text()) - applied_before
        storm_seconds = args.rounds * (args.seconds + 1.0)
        print()
        quiet_figures = summary("quiet", quiet, args.rounds * args.seconds)
        storm_figures = summary("refresh storm", stormy, args.rounds * args.seconds)
        print(f"{'refreshes':>14}: {applied:.0f} applied during the storm ({applied / storm_seconds:.0f}/s)")
        print(
            f"{'client ratio':>14}: p50 x{storm_figures['p50_ms'] / quiet_figures['p50_ms']:.2f}, "
            f"p99 x{storm_figures['p99_ms'] / quiet_figures['p99_ms']:.2f}"
        )
        print("in the servicer (config_service_getconfig_latency_seconds, interpolated in buckets):")
        for label, delta in (("quiet", quiet_server), ("refresh storm", storm_server)):
            print(
                f"{label:>14}: p50 {bucket_quantile(delta, 0.5) * 1e6:.0f} us  "
                f"p99 {bucket_quantile(delta, 0.99) * 1e6:.0f} us"
            )
        return 0
    finally:
        if fleet is not None:
            fleet.close()
        aws.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each measured phase")
    parser.add_argument("--rounds", type=int, default=5, help="quiet/storm phase pairs, alternated")
    parser.add_argument("--readers", type=int, default=8, help="concurrent GetConfig loops")
    parser.add_argument("--parameters", type=int, default=500, help="parameters loaded in the instance")
    parser.add_argument("--storm-concurrency", type=int, default=4, help="concurrent Refresh loops")
    parser.add_argument(
        "--storm-rate", type=float, default=0.0, help="refreshes per second; 0: as fast as acked"
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
