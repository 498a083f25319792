"""Row: PutParameter → an app in Go sees the value (issue 21), against AppConfig Agent's 45 s poll, same run.

Push, measured: the whole local stack (devstack.stack: kube-apiserver + etcd, local AWS with the change
emitter, the operator as it ships, podSync) with one config-service instance whose local HTTP API is on,
as the injected sidecar's is, and beside it the Go example app (examples/go-longpoll, built with this
machine's Go, cached) parked in its long poll (300 s) on one parameter under the route's prefix. For each of
N changes the bench waits until the app's long poll is parked (the service's gauge), calls PutParameter,
and takes the time from the call returning to the Go app printing the new value: EventBridge → SQS → the
operator (GetParameter, ConfigRefresh, Refresh over gRPC) → the sidecar's cache → the long poll answered
→ the app's own line on stdout. Changes are sequential, each written once the previous one's
ConfigRefresh is final (as the whole-path row does): a change written while the operator still finishes
the previous rollout of the same key joins a coalesced follow-up (refresh_operator/coalescing.py) and
waits its 0.5 s settle time, which is burst handling, not this path's latency.

Poll, measured against the same store: an AppConfig-Agent-style poller per key, which reads its key with
GetParameter every 45 s (the Agent's default `POLL_INTERVAL`) and makes what it read visible at once (as
an app reading the Agent's localhost:2772 cache would; the most favourable case for the poll). K keys,
each poller at a random phase of the 45 s cycle, each key written once per round at a random moment of
the round; staleness = from the write returning to the first poll that reads that version or a newer one.
It runs K keys at once so that R rounds take R x 45 s plus one interval, not R x K x 45 s. Expected: a
uniform wait over the interval, p50 ~ 22.5 s and p99 ~ 44.6 s; this is the measured figure. The poller is
a model of AppConfig Agent's polling (its interval, read for read), not AppConfig Agent itself.

Standalone: `.venv/bin/python -m bench.app_path --changes 50 --keys 20 --rounds 3` prints the table in
Markdown.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench.common import Check, RowResult, percentile, say

POLL_INTERVAL = 45.0
"""AWS AppConfig Agent's default poll interval (seconds)."""


def push(*, changes: int, workdir: Path) -> tuple[list[float], str]:
    """Seconds from PutParameter returned to the Go app printing the value, one per change, and how the
    operator's Refresh calls reached the instance."""
    from bench.path import Rollouts
    from devstack.controlplane.procs import free_ports
    from devstack.services.local_apps import AppProcess, go_longpoll_binary
    from devstack.stack.builder import Stack

    binary = go_longpoll_binary()  # built (or taken from the cache) before the stack starts
    (http_port,) = free_ports(1, "127.0.0.1")
    say("  starting the whole stack with 1 config-service instance (local HTTP API on) ...")
    stack = Stack.start(
        instances=1,
        namespace="bench-go-app",
        workdir=workdir,
        service_args=["--local-http-host", "127.0.0.1", "--local-http-port", str(http_port)],
    )
    app: AppProcess | None = None
    rollouts = Rollouts(stack)
    try:
        instance = stack.fleet[0]
        ssm = stack.local_aws.client("ssm")
        name = f"{stack.local_aws.prefix}bench/go-app/db_url"
        version = int(ssm.put_parameter(Name=name, Value="v0", Type="String", Overwrite=True)["Version"])
        app = AppProcess(
            [str(binary)],
            env={"CONFIG_HTTP": f"http://127.0.0.1:{http_port}", "CONFIG_NAME": name, "CONFIG_WAIT": "300s"},
            log_path=workdir / "go-app.log",
        )
        app.wait_line(partial(_shows, "value=v0"), timeout=120)  # the first change, pushed or bootstrapped
        samples: list[float] = []
        for index in range(1, changes + 1):
            rollouts.wait_final(name, version)
            deadline = time.monotonic() + 60
            while "config_service_local_http_long_polls 1.0" not in instance.metrics_text():
                if time.monotonic() > deadline:
                    raise RuntimeError("the Go app's long poll never parked")
                time.sleep(0.005)
            value = f"v{index}"
            called = time.monotonic()
            answer = ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
            returned = time.monotonic()
            version = int(answer["Version"])
            seen, _ = app.wait_line(partial(_shows, f"value={value}"), after=called, timeout=60)
            samples.append(seen - returned)
        return samples, stack.security_name()
    finally:
        if app is not None:
            app.close()
        rollouts.close()
        stack.stop()


@dataclass
class _Key:
    name: str
    phase: float
    reads: list[tuple[float, int]] = field(default_factory=list)
    writes: list[tuple[float, int]] = field(default_factory=list)


def poll(*, keys: int, rounds: int, workdir: Path, seed: int = 21) -> tuple[list[float], int]:
    """Seconds from a write returning to a 45 s poller reading it, one per write; and the reads made."""
    from devstack.aws.local_aws import LocalAws

    aws = LocalAws.start(log_path=workdir / "moto-poll.log")
    stop = threading.Event()
    rng = random.Random(seed)
    try:
        ssm = aws.client("ssm")
        state = [
            _Key(f"{aws.prefix}bench/appconfig-poll/k{i}", rng.uniform(0, POLL_INTERVAL)) for i in range(keys)
        ]
        for key in state:
            ssm.put_parameter(Name=key.name, Value="initial", Type="String")
        start = time.monotonic() + 1.0
        schedule = sorted(
            (start + r * POLL_INTERVAL + rng.uniform(0, POLL_INTERVAL), k)
            for r in range(rounds)
            for k in range(keys)
        )
        end = schedule[-1][0] + POLL_INTERVAL + 2.0  # every poller reads once more after the last write

        def poller(key: _Key) -> None:
            client = aws.client("ssm")
            tick = start + key.phase
            while not stop.is_set() and tick <= end:
                stop.wait(max(0.0, tick - time.monotonic()))
                version = int(client.get_parameter(Name=key.name)["Parameter"]["Version"])
                key.reads.append((time.monotonic(), version))
                tick += POLL_INTERVAL

        threads = [threading.Thread(target=poller, args=(key,), daemon=True) for key in state]
        for thread in threads:
            thread.start()
        say(
            f"  45 s poll: {keys} keys x {rounds} round(s), about {(end - time.monotonic()) / 60:.1f} min ..."
        )
        for at, k in schedule:
            time.sleep(max(0.0, at - time.monotonic()))
            answer = ssm.put_parameter(Name=state[k].name, Value=f"w{at:.3f}", Type="String", Overwrite=True)
            state[k].writes.append((time.monotonic(), int(answer["Version"])))
        for thread in threads:
            thread.join(end - time.monotonic() + 30)
        samples = []
        for key in state:
            for returned, version in key.writes:
                first = next(
                    (t for t, held in key.reads if t >= returned and held >= version),
                    None,
                )
                if first is None:
                    raise RuntimeError(f"the poller of {key.name} never read version {version}")
                samples.append(first - returned)
        return samples, sum(len(key.reads) for key in state)
    finally:
        stop.set()
        aws.stop()


def run(*, changes: int, keys: int, rounds: int, workdir: Path | None = None) -> RowResult:
    import tempfile

    workdir = workdir or Path(tempfile.mkdtemp(prefix="app-path-bench-"))
    result = RowResult(
        title="PutParameter → an app in Go sees the value, against a 45 s poll", method=__doc__ or ""
    )
    pushed, security = push(changes=changes, workdir=workdir / "push")
    say(
        f"  push: PutParameter returned → Go app printed: p50 {percentile(pushed, 50) * 1000:.0f} ms,"
        f" p99 {percentile(pushed, 99) * 1000:.0f} ms over {len(pushed)} changes"
    )
    polled, reads = poll(keys=keys, rounds=rounds, workdir=workdir)
    say(
        f"  45 s poll: p50 {percentile(polled, 50):.1f} s, p99 {percentile(polled, 99):.1f} s over"
        f" {len(polled)} writes ({reads} GetParameter)"
    )
    rows: list[list[str]] = []
    for label, samples in (
        ("push: operator → sidecar → the Go app's long poll", pushed),
        (f"poll: GetParameter every {POLL_INTERVAL:g} s (AppConfig Agent's default)", polled),
    ):
        rows.append(
            [
                label,
                str(len(samples)),
                _seconds(percentile(samples, 50)),
                _seconds(percentile(samples, 99)),
                _seconds(max(samples)),
            ]
        )
    result.tables.append(
        (["PutParameter returned → the app has the value", "writes", "p50", "p99", "max"], rows)
    )
    ratio_p50 = percentile(polled, 50) / percentile(pushed, 50)
    ratio_p99 = percentile(polled, 99) / percentile(pushed, 99)
    result.notes.append(
        f"Same run, same machine: the push is {ratio_p50:,.0f}x faster at p50 and {ratio_p99:,.0f}x at p99. "
        f"The poll made {reads} GetParameter calls to serve {len(polled)} writes to {keys} keys; the push "
        "path reads each change once (the operator's GetParameter) whatever the number of apps."
    )
    result.checks.append(
        Check(
            what="PutParameter → an app in Go sees the value (issue 21)",
            target=f"within the same second; against AppConfig Agent's {POLL_INTERVAL:g} s poll, same run",
            measured=(
                f"push p50 {percentile(pushed, 50) * 1000:.0f} ms,"
                f" p99 {percentile(pushed, 99) * 1000:.0f} ms;"
                f" 45 s poll p50 {percentile(polled, 50):.1f} s, p99 {percentile(polled, 99):.1f} s"
                f" ({ratio_p99:,.0f}x lower p99; refresh calls {security})"
            ),
            met=percentile(pushed, 99) < 1.0,
        )
    )
    return result


def _shows(suffix: str, line: str) -> bool:
    return line.endswith(suffix)


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def main() -> int:
    from bench.local_delivery import markdown

    parser = argparse.ArgumentParser(
        prog="python -m bench.app_path", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--changes", type=int, default=50, help="pushed changes (default 50)")
    parser.add_argument("--keys", type=int, default=20, help="keys polled at once (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="writes per polled key (default 3)")
    args = parser.parse_args()
    print(markdown(run(changes=args.changes, keys=args.keys, rounds=args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
