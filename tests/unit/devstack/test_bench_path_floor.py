"""The path row's CPU floor: what one change cost the instances and the operator, over the machine's
cores, and the CPU time read for a process."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds  # noqa: E402
from bench.path import AckedPath  # noqa: E402


def test_the_floor_is_the_instances_and_the_operators_cpu_over_the_cores() -> None:
    acked = AckedPath(ms=[180.0, 240.0], instances_cpu=[0.21, 0.30], operator_cpu=[0.05, 0.06], cores=2)

    assert [round(value, 6) for value in acked.floor_ms()] == [130.0, 180.0]
    described = acked.describe_floor(100)
    assert "over the 2 cores: p50 130 ms, p99 180 ms" in described
    assert "instances 2.10 ms each" in described


def test_cpu_seconds_counts_this_process_working_and_is_zero_for_a_gone_one() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass

    assert cpu_seconds(os.getpid()) - before >= 0.04
    assert cpu_seconds(2**22 + 12345) == 0.0
    assert cpu_seconds(None) == 0.0


def test_cpu_seconds_counts_a_process_s_other_threads() -> None:
    """gRPC core and the operator's blocking pool work outside the main thread; /proc/PID/schedstat, which
    this read before, counts the main thread alone and saw none of this."""

    def spin() -> None:
        deadline = time.thread_time() + 0.2
        while time.thread_time() < deadline:
            pass

    before = cpu_seconds(os.getpid())
    worker = threading.Thread(target=spin)
    worker.start()
    worker.join()

    assert cpu_seconds(os.getpid()) - before >= 0.19
