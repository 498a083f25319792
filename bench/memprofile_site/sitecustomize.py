"""Bench only (bench/memory_profile.py): dump a tracemalloc snapshot of this process on SIGUSR2.

Put on PYTHONPATH of a process started with PYTHONTRACEMALLOC=<frames> and CONFIG_REFRESH_BENCH_TRACE_DIR
set; nothing here is imported by the operator itself. On SIGUSR2 the process reads the stage name from
`<dir>/request`, writes `<dir>/<stage>.json` (VmRSS, VmHWM, tracemalloc's traced and own memory, glibc's
malloc counters) and then `<dir>/<stage>.snapshot` (`tracemalloc.Snapshot.dump`, renamed into place when
complete, so a reader that sees it sees all of it). SIGUSR2 is taken by nothing else in the operator
(kopf handles SIGINT and SIGTERM; asyncio, aiohttp's client, grpc and boto3 none).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import time
import tracemalloc
from pathlib import Path
from types import FrameType

_DIR = os.environ.get("CONFIG_REFRESH_BENCH_TRACE_DIR")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _malloc() -> dict[str, int]:
    """glibc's counters over all arenas: bytes in use (small + mmapped blocks) and free but held."""
    try:
        libc = ctypes.CDLL(None)
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    mallinfo2.restype = _Mallinfo2
    info = mallinfo2()
    return {
        "malloc_in_use": int(info.uordblks + info.hblkhd),
        "malloc_free_held": int(info.fordblks),
        "malloc_arena": int(info.arena),
        "malloc_mmapped": int(info.hblkhd),
    }


def _status() -> dict[str, int]:
    fields: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0]) * 1024
    return fields


def _dump(signum: int, frame: FrameType | None) -> None:
    assert _DIR is not None
    root = Path(_DIR)
    stage = (root / "request").read_text(encoding="utf-8").strip()
    started = time.monotonic()
    traced, traced_peak = tracemalloc.get_traced_memory()
    facts: dict[str, float] = {
        **_status(),
        **_malloc(),
        "traced": traced,
        "traced_peak": traced_peak,
        "tracemalloc_own": tracemalloc.get_tracemalloc_memory(),
        "frames": tracemalloc.get_traceback_limit(),
    }
    snapshot = tracemalloc.take_snapshot()
    facts["snapshot_seconds"] = time.monotonic() - started
    (root / f"{stage}.json").write_text(json.dumps(facts), encoding="utf-8")
    partial = root / f"{stage}.snapshot.part"
    snapshot.dump(str(partial))
    partial.rename(root / f"{stage}.snapshot")


if _DIR and tracemalloc.is_tracing():
    signal.signal(signal.SIGUSR2, _dump)
