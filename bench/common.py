"""What every benchmark row shares: percentiles, the result record, the machine description."""

from __future__ import annotations

import datetime
import io
import math
import os
import pickle
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "hack") not in sys.path:
    sys.path.insert(0, str(ROOT / "hack"))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence: the smallest value with at least q %
    of the values at or below it (p99 of 100 values is the 99th, not the maximum)."""
    ordered = sorted(values)
    rank = math.ceil(q * len(ordered) / 100 - 1e-9)  # 1-based; the epsilon absorbs float noise
    return ordered[max(1, min(len(ordered), rank)) - 1]


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Check:
    """One target of the targets table (bench/targets.py) and what was measured against it."""

    what: str
    target: str
    measured: str
    met: bool | None  # None: not measured in this run


@dataclass
class RowResult:
    """A benchmark's outcome: checks against targets, tables for the report, plots written."""

    title: str
    method: str
    checks: list[Check] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Machine:
    cpus: int
    memory_gib: float
    python: str
    system: str
    commit: str
    date: str
    load: str
    load_end: str = ""


def machine() -> Machine:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return Machine(
        cpus=os.cpu_count() or 0,
        memory_gib=pages / 2**30,
        python=platform.python_version(),
        system=f"{platform.system()} {platform.release()} {platform.machine()}",
        commit=commit,
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        load=current_load(),
    )


def current_load() -> str:
    """The 1, 5 and 15 minute load averages, as text."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB, from /proc/PID/status."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def process_cpu_clock(pid: int) -> int:
    """The id of process `pid`'s CPU-time clock, as glibc's clock_getcpuclockid(3) builds it on Linux
    (the kernel's MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)), which Python's time module does not wrap."""
    return (~pid << 3) | 2


def cpu_seconds(pid: int | None) -> float:
    """Time a process has run on a CPU so far, all its threads together, exited ones included (its
    CPU-time clock, in ns); 0 if it is gone.

    Not /proc/PID/schedstat: that counts the main thread alone, and misses gRPC core's threads and the
    operator's blocking pool. Not /proc/PID/stat either: its utime and stime count 10 ms ticks, coarser
    than one instance's work for one change."""
    if pid is None:
        return 0.0
    try:
        return time.clock_gettime(process_cpu_clock(pid))
    except OSError:
        return 0.0


def cpu_seconds_of(pids: Sequence[int | None]) -> float:
    """CPU seconds used so far by the processes `pids` together (the gone ones count 0)."""
    return sum(cpu_seconds(pid) for pid in pids)


def fmt_ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


@dataclass
class Row:
    """What one row produced: its report sections and the figures the headline combines."""

    results: list[RowResult]
    push: dict[str, Any] = field(default_factory=dict)
    polls: list[dict[str, Any]] = field(default_factory=list)
    when: str = ""
    machine: Machine | None = None


STORE = Path.home() / ".cache" / "config-refresh" / "bench" / "last-rows.pickle"
QUICK_STORE = STORE.with_name("last-rows-quick.pickle")
"""`--quick` rows are kept apart: a smoke run must never replace a full run's row that `--merge` reports."""


def _store(quick: bool) -> Path:
    return QUICK_STORE if quick else STORE


def load_rows(*, quick: bool = False) -> dict[str, Row]:
    """The rows of earlier runs (`--merge`) of the same kind (full or quick), from this machine's cache."""
    store = _store(quick)
    if not store.exists():
        return {}
    rows: dict[str, Row] = _RowUnpickler(io.BytesIO(store.read_bytes())).load()
    return rows


class _RowUnpickler(pickle.Unpickler):
    """Reads rows cached by this program (also ones pickled while Row lived in bench.__main__)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__" and name == "Row":
            return Row
        return super().find_class(module, name)


def save_rows(rows: dict[str, Row], *, quick: bool = False) -> None:
    store = _store(quick)
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_bytes(pickle.dumps(rows))
