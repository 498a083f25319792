"""GetConfig latency, quiet versus during a refresh storm, measured in one run.

Why: the service promises that readers never wait on a refresh (DESIGN.md: GetConfig p99 during a refresh
storm <= 1.1 x quiet p99). This starts the local AWS stack and one real `config-service` process, loads it
with parameters, then measures GetConfig from a client process twice for the same duration: once quiet,
once while a second client process pushes refreshes (VALUE mode, new versions across all parameters) as
fast as the instance acknowledges them. It prints p50/p90/p99/max for both phases and the ratios.

    .venv/bin/python bench/getconfig_latency.py [--seconds 5] [--readers 8] [--parameters 500]

The numbers are loopback numbers on a shared 2-core machine: compare the two phases of one run, not runs
with each other. Nothing here is asserted by a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


async def storm(address: str, names: list[str], seconds: float, concurrency: int) -> int:
    """Push refreshes with ever newer versions for `seconds`; returns how many were applied."""
    applied = 0
    base = datetime.now(UTC) + timedelta(days=1)
    version = 1
    async with grpc.aio.insecure_channel(address) as channel:
        stub = rpb_grpc.RefreshServiceStub(channel)
        stop_at = time.monotonic() + seconds

        async def pusher() -> None:
            nonlocal applied, version
            while time.monotonic() < stop_at:
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
    from devstack.local_aws import LocalAws
    from devstack.services import ServiceFleet

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
        quiet = asyncio.run(read_phase(instance.config_address, names, args.readers, args.seconds))
        names_file = workdir / "names.json"
        names_file.write_text(json.dumps(names))
        stormer = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--storm",
                instance.refresh_address,
                "--names-file",
                str(names_file),
                "--seconds",
                str(args.seconds + 2),
                "--storm-concurrency",
                str(args.storm_concurrency),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)  # let the storm reach full speed before measuring
        stormy = asyncio.run(read_phase(instance.config_address, names, args.readers, args.seconds))
        out, _ = stormer.communicate(timeout=120)
        applied = int(out.strip() or 0)

        print()
        quiet_figures = summary("quiet", quiet, args.seconds)
        storm_figures = summary("refresh storm", stormy, args.seconds)
        print(f"{'refreshes':>14}: {applied} applied during the storm ({applied / (args.seconds + 2):.0f}/s)")
        print(
            f"{'ratio':>14}: p50 x{storm_figures['p50_ms'] / quiet_figures['p50_ms']:.2f}, "
            f"p99 x{storm_figures['p99_ms'] / quiet_figures['p99_ms']:.2f} (target p99 <= x1.10)"
        )
        return 0
    finally:
        if fleet is not None:
            fleet.close()
        aws.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--readers", type=int, default=8, help="concurrent GetConfig loops")
    parser.add_argument("--parameters", type=int, default=500, help="parameters loaded in the instance")
    parser.add_argument("--storm-concurrency", type=int, default=4, help="concurrent Refresh loops")
    parser.add_argument("--storm", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--names-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.storm:
        names = json.loads(Path(args.names_file).read_text())
        print(asyncio.run(storm(args.storm, names, args.seconds, args.storm_concurrency)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
