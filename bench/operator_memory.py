"""Operator idle memory: the resident memory (VmRSS) of the operator with no ConfigRoute, once it settles.

The operator runs as it ships (`config-refresh-operator --standalone -n NS`) against the local stack (real
kube-apiserver and etcd, moto for SQS, Parameter Store and Cloud Map), in an empty namespace, once with
podSync on (the default) and once with it off. After it logs that it indexed the routes (none), VmRSS is
read from /proc every 0.5 s until it has moved less than 1 MiB over 10 s (at most 90 s): that is the
settled figure; VmHWM is the peak so far. Each configuration runs `runs` times, each in a new process;
the table gives the median and the spread. With `--base-operator PATH` (another build's
`config-refresh-operator`, e.g. from a checkout of an older commit) the same stack measures both builds,
alternating, so the two columns share one machine state.

Run alone: `python -m bench.operator_memory [--runs N] [--base-operator PATH]` (prints the report section);
as a row of the report: `python -m bench --only idle`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import RowResult, rss_kib, say
from devstack.aws.local_aws import LocalAws
from devstack.controlplane import build as controlplane_build
from devstack.controlplane.plane import ControlPlane
from devstack.stack.operator import OperatorProcess, operator_environment, operator_executable

NAMESPACE = "bench-idle"
SAMPLE_SECONDS = 0.5
STEADY_WINDOW_SECONDS = 10.0
STEADY_KIB = 1024
SETTLE_LIMIT_SECONDS = 90.0


@dataclass(frozen=True)
class Sample:
    rss_kib: int
    hwm_kib: int
    settle_seconds: float


def settle(pid: int) -> Sample:
    """Sample VmRSS until it moves less than STEADY_KIB over STEADY_WINDOW_SECONDS."""
    started = time.monotonic()
    window: list[tuple[float, int]] = []
    while True:
        now = time.monotonic()
        rss, hwm = rss_kib(pid)
        window = [(at, value) for at, value in window if now - at <= STEADY_WINDOW_SECONDS]
        window.append((now, rss))
        full = now - window[0][0] >= STEADY_WINDOW_SECONDS - SAMPLE_SECONDS
        values = [value for _, value in window]
        if (full and max(values) - min(values) < STEADY_KIB) or now - started > SETTLE_LIMIT_SECONDS:
            return Sample(rss, hwm, now - started)
        time.sleep(SAMPLE_SECONDS)


def measure(*, runs: int, builds: dict[str, Path], log_dir: Path) -> dict[tuple[str, bool], list[Sample]]:
    """Samples per (build, podSync on) from one local stack, builds alternating within each round."""
    plane = ControlPlane.start(binaries=controlplane_build.ensure_built(quiet=True))
    aws = LocalAws.start(log_path=log_dir / "moto.log")
    samples: dict[tuple[str, bool], list[Sample]] = {}
    try:
        plane.ensure_crds()
        plane.create_namespace(NAMESPACE)
        for round_number in range(runs):
            for pod_sync in (True, False):
                for index, (build, executable) in enumerate(builds.items()):
                    env = operator_environment(
                        plane, aws, {"CONFIG_REFRESH_POD_SYNC": str(pod_sync).lower()}, namespace=NAMESPACE
                    )
                    operator = OperatorProcess.launch(
                        namespace=NAMESPACE,
                        env=env,
                        log_path=log_dir / f"operator-{index}.log",
                        timeout=180,
                        executable=executable,
                    )
                    try:
                        if operator.pid is None:
                            raise RuntimeError("the operator has no process")
                        sample = settle(operator.pid)
                    finally:
                        operator.stop()
                    samples.setdefault((build, pod_sync), []).append(sample)
                    say(
                        f"  run {round_number + 1}/{runs} {build}, podSync {'on' if pod_sync else 'off'}: "
                        f"RSS {sample.rss_kib / 1024:.1f} MiB (peak {sample.hwm_kib / 1024:.1f} MiB, "
                        f"settled in {sample.settle_seconds:.0f} s)"
                    )
    finally:
        aws.stop()
        plane.stop()
    return samples


def _mib(values: list[int]) -> str:
    median = statistics.median(values) / 1024
    return f"{median:.1f} MiB ({min(values) / 1024:.1f} to {max(values) / 1024:.1f})"


def run(*, runs: int, base_operator: Path | None = None) -> RowResult:
    builds = {"this tree": operator_executable()}
    if base_operator is not None:
        builds = {"base": base_operator, **builds}
    result = RowResult(title="Operator idle memory", method=__doc__ or "")
    if base_operator is not None:
        result.notes.append(f"base: {base_operator}{_commit_of(base_operator)}")
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as scratch:
        samples = measure(runs=runs, builds=builds, log_dir=Path(scratch))
    rows = []
    for (build, pod_sync), found in samples.items():
        rows.append(
            [
                build,
                "on" if pod_sync else "off",
                str(len(found)),
                _mib([s.rss_kib for s in found]),
                _mib([s.hwm_kib for s in found]),
            ]
        )
    result.tables.append((["build", "podSync", "runs", "settled VmRSS, median (min to max)", "VmHWM"], rows))
    return result


def section(result: RowResult) -> str:
    """The result as a docs/benchmarks.md section (for a run outside the full report)."""
    header, rows = result.tables[0]
    lines = [f"## {result.title}", "", f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.operator_memory", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=3, help="processes per build and configuration")
    parser.add_argument("--base-operator", type=Path, help="another build's config-refresh-operator")
    args = parser.parse_args(argv)
    print(section(run(runs=args.runs, base_operator=args.base_operator)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def _commit_of(executable: Path) -> str:
    """Which commit a build in a checkout's .venv/bin was made from (empty when it is not in one)."""
    checkout = executable.resolve().parents[2] if len(executable.resolve().parents) > 2 else None
    if checkout is None or not (checkout / ".git").exists():
        return ""
    done = subprocess.run(
        ["git", "-C", str(checkout), "log", "-1", "--format=%h (%cs: %s)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (
        f", the build of commit {done.stdout.strip()}" if done.returncode == 0 and done.stdout.strip() else ""
    )
