"""py-spy profiles for the benchmark rows: record a running process, then say where its time goes.

`record(pid, seconds, out)` samples a process into py-spy's collapsed-stack format, either without pausing
it (`--nonblocking`: the process under measurement keeps its latency) or with native frames (pausing it).
`recording(pid, out)` does the same for as long as a `with` block runs (the profile then covers exactly
the work the block does). `shares(path, buckets)` reads that file and gives each bucket the share of
samples whose stack contains one of its markers (the first bucket that matches wins, so order them from
specific to general);
`top_own(path)` gives the functions with the most own time.

py-spy comes with the dev extras (`make install`); without it, `record` returns None and a row says so.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


def executable() -> str | None:
    """The py-spy next to this interpreter, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, *, rate: int = 250, native: bool = False) -> Path | None:
    """Sample `pid` for `seconds` at `rate` Hz into `out` (collapsed stacks); None when it cannot.

    Only the thread holding the GIL is sampled (what a reader on the event loop waits behind). `native`
    adds C and Cython frames (grpc's cygrpc, where grpc.aio does most of its work); py-spy must then
    pause the process for each sample, so take such a profile apart from the latencies it would disturb.
    """
    spy = executable()
    if spy is None:
        return None
    done = subprocess.run(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            *(["--native"] if native else ["--nonblocking"]),
            "--gil",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        print(f"py-spy failed ({done.returncode}): {done.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return out


@dataclass
class Recorded:
    """What `recording` leaves once its block is over: the profile (None when py-spy could not take it),
    and the wall-clock seconds it covered."""

    path: Path | None = None
    seconds: float = 0.0


@contextlib.contextmanager
def recording(pid: int, out: Path, *, rate: int = 250, native: bool = False) -> Iterator[Recorded]:
    """Sample `pid` (GIL holder only; nonblocking, or with native frames, as `record`) while the block
    runs; py-spy is stopped with SIGINT when it ends, which makes it write what it has. Without py-spy the
    block runs unprofiled and `Recorded.path` stays None."""
    recorded = Recorded()
    spy = executable()
    if spy is None:
        yield recorded
        return
    command = [spy, "record", "--pid", str(pid), "--duration", "3600", "--rate", str(rate)]
    command += ["--native" if native else "--nonblocking", "--gil", "--format", "raw", "--output", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)  # py-spy attaches (reads the interpreter's memory layout) before the block's work
    started = time.monotonic()
    try:
        yield recorded
    finally:
        recorded.seconds = time.monotonic() - started
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        if process.returncode == 0 and out.exists():
            recorded.path = out
        else:
            print(f"py-spy failed ({process.returncode}): {(output or '').strip()[-500:]}", file=sys.stderr)


def _stacks(path: Path) -> Counter[str]:
    stacks: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def shares(path: Path, buckets: Sequence[tuple[str, Sequence[str]]]) -> list[tuple[str, float]]:
    """(bucket, share of all samples) for each bucket, then ("other", the rest)."""
    stacks = _stacks(path)
    total = sum(stacks.values()) or 1
    counted: Counter[str] = Counter()
    for stack, count in stacks.items():
        label = next(
            (name for name, markers in buckets if any(marker in stack for marker in markers)), "other"
        )
        counted[label] += count
    return [(name, counted[name] / total) for name, _ in buckets] + [("other", counted["other"] / total)]


def top_own(path: Path, count: int = 8) -> list[tuple[str, float]]:
    """The functions with the most own (leaf) samples, as (frame, share)."""
    stacks = _stacks(path)
    total = sum(stacks.values()) or 1
    leaves: Counter[str] = Counter()
    for stack, samples in stacks.items():
        leaves[stack.rsplit(";", 1)[-1]] += samples
    return [(frame, samples / total) for frame, samples in leaves.most_common(count)]


def samples(path: Path) -> int:
    """How many samples the profile holds."""
    return sum(_stacks(path).values())
