"""What one warm gRPC channel costs the operator, outside the operator: the floor of the rollouts' growth.

`FakeEndpoints(N)` (bench/scale.py's minimal endpoints, each at its own loopback address) and, per
variant, a fresh Python process that imports grpc and the operator's fan-out, reads its RSS, opens one
channel per endpoint through the operator's own `ChannelPool` (the options the operator passes, plus the
variant's), makes one Refresh call on each (64 at a time, as a route's default maxConcurrency), waits
2 s and reads its RSS again; the traced Python heap of the same step is read with tracemalloc (1 frame)
in the same process, so the native part (gRPC core: channel, subchannel, HTTP/2 transport, TCP
endpoint) is the RSS growth minus it. Variants alternate, `rounds` times, so they share the machine's
state; the figures are per channel.

Run alone: `python -m bench.channel_memory --channels 1000 --rounds 3`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence

from bench.common import RowResult, say
from devstack.stack.operator import OPERATOR_IMAGE_ENV

WAIT, CALLS, CLOSE, BATCH = "bench.wait_seconds", "bench.calls", "bench.close", "bench.batch"
"""Not channel options: how long to wait before the second reading, whether to call, whether to close."""
AS_OPENED = "as the operator opens them"
OPTION_VARIANTS: dict[str, dict[str, int]] = {
    AS_OPENED: {},
    "smaller read chunks (tcp_read_chunk_size 1 KiB, max 64 KiB)": {
        "grpc.experimental.tcp_read_chunk_size": 1024,
        "grpc.experimental.tcp_max_read_chunk_size": 65536,
    },
    "no BDP probe, 16 KiB stream window": {"grpc.http2.bdp_probe": 0, "grpc.http2.lookahead_bytes": 16384},
    "smaller HPACK tables (1 KiB each way)": {
        "grpc.http2.hpack_table_size.decoder": 1024,
        "grpc.http2.hpack_table_size.encoder": 1024,
    },
}
"""Channel options that might shrink a connection's buffers."""
VARIANTS: dict[str, dict[str, int]] = {
    **OPTION_VARIANTS,
    "gone idle (client_idle_timeout 1 s; measured after 4 s)": {
        "grpc.client_idle_timeout_ms": 1000,
        WAIT: 4,
    },
    "opened, never called (no connection)": {CALLS: 0},
    "closed again (ChannelPool.aclose, then 2 s)": {CLOSE: 1},
    "200 at a time (each 200 closed before the next are opened)": {BATCH: 200},
}

CHILD = """
import asyncio, json, sys, time, tracemalloc
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
from configrefresh.v1 import refresh_service_pb2 as pb
from refresh_operator.fanout.channels import ChannelPool
addresses, options = json.loads(sys.stdin.read())
options = dict(options)
wait = options.pop("bench.wait_seconds", 2)
calls = options.pop("bench.calls", 1)
close = options.pop("bench.close", 0)
batch = options.pop("bench.batch", len(addresses))
options.setdefault("grpc.client_idle_timeout_ms", 600000)
async def main():
    pool = ChannelPool(options=list(options.items()))
    limit = asyncio.Semaphore(64)
    async def one(address):
        async with limit:
            answer = await pool.stub(address, None).Refresh(
                pb.RefreshRequest(refresh_id="m", parameter_name="/config-service/x", version=1), timeout=30)
            return answer.result == pb.REFRESH_RESULT_APPLIED
    await asyncio.sleep(0.5)
    before = rss()
    tracemalloc.start(1)
    if calls:
        ok = []
        for first in range(0, len(addresses), batch):
            ok += await asyncio.gather(*(one(a) for a in addresses[first : first + batch]))
            if first + batch < len(addresses):
                await pool.aclose()
    else:
        ok = [pool.stub(a, None) is not None for a in addresses]
    if close:
        await pool.aclose()
    await asyncio.sleep(wait)
    traced = tracemalloc.get_traced_memory()[0]
    own = tracemalloc.get_tracemalloc_memory()
    after = rss()
    print(json.dumps({"ok": sum(ok), "rss": after - before - own, "traced": traced}))
    await pool.aclose()
asyncio.run(main())
"""


def measure(addresses: list[str], options: dict[str, int]) -> dict[str, int]:
    answer = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps([addresses, list(options.items())]),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, **OPERATOR_IMAGE_ENV},
    )
    if answer.returncode != 0:
        raise RuntimeError(f"the channel process failed ({answer.returncode}):\n{answer.stderr[-3000:]}")
    measured: dict[str, int] = json.loads(answer.stdout.strip().splitlines()[-1])
    return measured


def run(*, channels: int, rounds: int) -> tuple[RowResult, dict[str, tuple[float, float]]]:
    """The section, and per variant the median (RSS, traced Python) KiB per channel."""
    from devstack.services.endpoints import FakeEndpoints

    found: dict[str, list[dict[str, int]]] = {name: [] for name in VARIANTS}
    served = FakeEndpoints(channels, kind="minimal", processes=1)
    try:
        addresses = [endpoint.address for endpoint in served]
        for round_number in range(rounds):
            for name, options in VARIANTS.items():
                sample = measure(addresses, options)
                found[name].append(sample)
                say(
                    f"  round {round_number + 1} {name}: {sample['ok']} applied,"
                    f" RSS +{sample['rss'] / channels / 1024:.1f} KiB per channel,"
                    f" traced +{sample['traced'] / channels / 1024:.1f} KiB"
                )
    finally:
        served.close()
    result = RowResult(title=f"One warm gRPC channel, {channels:,} at once", method=__doc__ or "")
    base = statistics.median(s["rss"] for s in found[next(iter(VARIANTS))])
    rows = []
    figures: dict[str, tuple[float, float]] = {}
    for name, samples in found.items():
        rss = statistics.median(s["rss"] for s in samples)
        traced = statistics.median(s["traced"] for s in samples)
        figures[name] = (rss / channels / 1024, traced / channels / 1024)
        rows.append(
            [
                name,
                str(min(s["ok"] for s in samples)),
                f"{rss / channels / 1024:.1f}",
                f"{traced / channels / 1024:.1f}",
                f"{(rss - traced) / channels / 1024:.1f}",
                f"{rss / base:.2f}",
            ]
        )
    result.tables.append(
        (
            [
                "channel options",
                "calls applied (min)",
                "RSS KiB per channel (median)",
                "traced Python KiB",
                "native KiB",
                "RSS ratio to the operator's",
            ],
            rows,
        )
    )
    return result, figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.channel_memory", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from bench.memory_profile import render

    print(render(run(channels=args.channels, rounds=args.rounds)[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
