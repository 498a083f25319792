"""Fan-out latency: time from the start of ``FanOut.run()`` to the last instance's acknowledgment.

What it measures: the operator's fan-out alone (channels warm, one new parameter version per run, every
target answering APPLIED), for fleets of 10 and 100 instances, p50 and p99 over ``--runs`` runs, plus the
first (cold, channels being opened) run on its own line. Nothing here asserts a number: it prints them.

The backends, said in the output as well:

- ``real``: that many real ``config-service`` processes (devstack.services.fleet, token auth) on 127.0.0.x,
  bootstrapped from a local AWS stack (moto server process). Default for fleets of up to ``--real-max``
  (10) instances.
- above ``--real-max``, NOT config-service processes (100 real ones do not fit on a 2-core machine):
  ``--light-processes`` (2) separate Python processes serve that many distinct endpoints (127.1.x.y, each
  its own grpc.aio server and port, so one channel and one connection each). ``embedded`` (default): each
  endpoint runs config_service's own refresh path (RefreshServicer + Refresher + ConfigCache; no auth, no
  bootstrap). ``minimal``: a trivial servicer that answers APPLIED. Either shows the operator's side of
  the fan-out at that size, not an instance's own process costs.

Each size also runs a "bare" baseline, interleaved with the measured runs: one ``asyncio.gather`` of
``stub.Refresh`` over the same warm channels, without the engine.

Usage: ``.venv/bin/python bench/fanout_latency.py [--sizes 10,100] [--runs 30] [--real-max 10]
[--light embedded|minimal] [--light-processes 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack"))

from configrefresh.v1 import refresh_service_pb2 as pb  # noqa: E402
from refresh_operator.fanout import (  # noqa: E402
    BreakerRegistry,
    ChannelPool,
    FanOut,
    RefreshPolicy,
    Result,
    Target,
    TargetOutcome,
)


def light_host(index: int) -> str:
    """127.1.x.y: 250 endpoints per /24, so fleets of thousands get distinct loopback addresses."""
    return f"127.1.{index // 250}.{index % 250 + 1}"


# ----- the light backend (runs in its own process) ---------------------------------------------------


async def _serve_light(first: int, count: int, kind: str) -> None:
    """Serve ``count`` endpoints from index ``first`` until stdin closes; print their addresses first."""
    import grpc

    from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc

    class Applied(pb_grpc.RefreshServiceServicer):
        async def Refresh(self, request: pb.RefreshRequest, context: Any) -> pb.RefreshResponse:
            return pb.RefreshResponse(result=pb.REFRESH_RESULT_APPLIED, applied_version=request.version)

        async def GetState(self, request: pb.GetStateRequest, context: Any) -> pb.GetStateResponse:
            return pb.GetStateResponse()

    def servicer(index: int) -> Any:
        if kind == "minimal":
            return Applied()
        # config_service's own refresh path (validation, version check, snapshot swap), one cache each.
        from config_service.cache import ConfigCache
        from config_service.refresh_servicer import RefreshServicer
        from config_service.refresher import Refresher

        cache = ConfigCache()
        refresher = Refresher(cache=cache, store=None, prefixes=("/config-service/",))
        return RefreshServicer(cache=cache, refresher=refresher, instance_id=f"light-{index}")

    servers = []
    addresses = []
    for index in range(first, first + count):
        server = grpc.aio.server()
        pb_grpc.add_RefreshServiceServicer_to_server(servicer(index), server)
        host = light_host(index)
        addresses.append(f"{host}:{server.add_insecure_port(f'{host}:0')}")
        await server.start()
        servers.append(server)
    print(json.dumps(addresses), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await asyncio.gather(*(server.stop(grace=None) for server in servers))


class LightBackend:
    def __init__(self, count: int, *, kind: str, processes: int) -> None:
        processes = max(1, min(processes, count))
        what = (
            "config_service's RefreshServicer+Refresher+ConfigCache per endpoint, no auth, no bootstrap"
            if kind == "embedded"
            else "a minimal in-bench RefreshService that answers APPLIED"
        )
        self.description = (
            f"endpoints, NOT config-service processes: {what}, served by {processes} separate process(es)"
        )
        share = -(-count // processes)
        self._processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--serve-light",
                    f"{first},{min(share, count - first)},{kind}",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for first in range(0, count, share)
        ]
        addresses: list[str] = []
        for process in self._processes:
            assert process.stdout is not None
            addresses.extend(json.loads(process.stdout.readline()))
        self.targets = [
            Target(instance_id=f"light-{index}", address=address, attributes={})
            for index, address in enumerate(addresses)
        ]
        self.policy = RefreshPolicy(max_concurrency=max(64, count))
        self.metadata: tuple[tuple[str, str], ...] = ()

    def close(self) -> None:
        for process in self._processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in self._processes:
            process.wait(30)
            if process.stdout is not None:
                process.stdout.close()


class RealBackend:
    description = "real config-service processes (token auth) on a local AWS stack"

    def __init__(self, count: int, workdir: Path) -> None:
        from devstack.aws.local_aws import LocalAws
        from devstack.services.fleet import ServiceFleet

        self._aws = LocalAws.start(log_path=workdir / "moto.log")
        self._fleet = ServiceFleet(count, local_aws=self._aws, workdir=workdir / "fleet", auth="token")
        self._fleet.start()
        self._fleet.wait_serving(180)
        self.targets = [
            Target(instance_id=instance.instance_id, address=instance.refresh_address, attributes={})
            for instance in self._fleet
        ]
        token_file = self._fleet.credentials.token_file
        assert token_file is not None
        # Loopback only, and measured as before: the explicit opt-out a route would set as
        # spec.refresh.insecureAllowPlaintext (never a default).
        self.policy = RefreshPolicy(
            max_concurrency=max(64, count), token_file=str(token_file), allow_plaintext=True
        )
        self.metadata = (("authorization", f"Bearer {token_file.read_text().strip()}"),)

    def close(self) -> None:
        self._fleet.close()
        self._aws.stop()


# ----- measuring -------------------------------------------------------------------------------------


@dataclass
class Sample:
    to_last_ack_ms: float
    run_ms: float


async def _one_run(fanout: FanOut, backend: Any, version: int) -> Sample:
    request = pb.RefreshRequest(
        refresh_id=f"bench-v{version}",
        parameter_name="/config-service/bench/fanout/flag",
        version=version,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE,
        value=f"value-{version}",
        value_type=pb.VALUE_TYPE_STRING,
    )
    acks: list[float] = []

    def note(outcome: TargetOutcome) -> None:
        acks.append(time.perf_counter())

    start = time.perf_counter()
    outcomes = await fanout.run(
        targets=backend.targets, request=request, policy=backend.policy, on_outcome=note
    )
    end = time.perf_counter()
    bad = [o for o in outcomes if o.result is not Result.APPLIED]
    if bad:
        raise SystemExit(f"run v{version}: {len(bad)} targets not applied, e.g. {bad[0]}")
    return Sample(to_last_ack_ms=(max(acks) - start) * 1000, run_ms=(end - start) * 1000)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))  # nearest rank
    return ordered[rank]


async def _bare_run(channels: ChannelPool, backend: Any, version: int) -> float:
    """The baseline: one asyncio.gather of stub.Refresh over the same warm channels, no engine."""
    request = pb.RefreshRequest(
        refresh_id=f"bare-v{version}",
        parameter_name="/config-service/bench/fanout/bare",
        version=version,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE,
        value=f"value-{version}",
    )
    metadata = backend.metadata
    stubs = [channels.stub(target.address, None) for target in backend.targets]
    start = time.perf_counter()
    await asyncio.gather(*(stub.Refresh(request, timeout=2.0, metadata=metadata) for stub in stubs))
    return (time.perf_counter() - start) * 1000


async def _measure(backend: Any, runs: int) -> tuple[Sample, list[Sample], list[float]]:
    channels = ChannelPool()
    fanout = FanOut(channels=channels, breakers=BreakerRegistry())
    samples: list[Sample] = []
    bare: list[float] = []
    try:
        cold = await _one_run(fanout, backend, 1)
        for version in range(2, runs + 2):  # interleaved, so both see the same machine load
            samples.append(await _one_run(fanout, backend, version))
            bare.append(await _bare_run(channels, backend, version))
    finally:
        await channels.aclose()
    return cold, samples, bare


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10,100", help="comma-separated fleet sizes")
    parser.add_argument("--runs", type=int, default=30, help="measured runs per size (after one cold run)")
    parser.add_argument("--real-max", type=int, default=10, help="largest fleet run on real config-service")
    parser.add_argument(
        "--light",
        choices=("embedded", "minimal"),
        default="embedded",
        help="servicer above --real-max: config_service's refresh path embedded, or a minimal one",
    )
    parser.add_argument(
        "--light-processes", type=int, default=2, help="processes serving the light endpoints"
    )
    parser.add_argument("--serve-light", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_light:
        first, count, kind = args.serve_light.split(",")
        asyncio.run(_serve_light(int(first), int(count), kind))
        return 0

    sizes = [int(size) for size in args.sizes.split(",") if size]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"fan-out latency, run() start → last acknowledgment; {args.runs} warm runs per size, 1 cold run")
    print(f"machine: {os.cpu_count()} CPUs, load average {load} at start")
    print(
        f"{'instances':>9}  {'backend':<8} {'cold ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f"  {'bare p50':>8} {'bare p99':>8}  note"
    )
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as scratch:
        for size in sizes:
            kind = "real" if size <= args.real_max else args.light
            backend: Any = (
                RealBackend(size, Path(scratch) / f"real-{size}")
                if kind == "real"
                else LightBackend(size, kind=args.light, processes=args.light_processes)
            )
            try:
                cold, samples, bare = asyncio.run(_measure(backend, args.runs))
            finally:
                backend.close()
            acks = [sample.to_last_ack_ms for sample in samples]
            print(
                f"{size:>9}  {kind:<8} {cold.to_last_ack_ms:>8.1f} {_percentile(acks, 50):>8.1f} "
                f"{_percentile(acks, 99):>8.1f} {max(acks):>8.1f}  {_percentile(bare, 50):>8.1f} "
                f"{_percentile(bare, 99):>8.1f}  {size} {backend.description}; "
                f"mean {statistics.fmean(acks):.1f} ms"
            )
    print("bare = asyncio.gather of stub.Refresh on the same warm channels, no engine (the floor)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
