"""The instance side of the path row's floor (bench/instance_cost.py): a process's CPU split by thread,
and the profile's buckets."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import instance_cost, pyspy  # noqa: E402
from bench.instance_cost import GRPC_CORE, MAIN, OTHER, ThreadCpu  # noqa: E402


def _burn(seconds: float) -> None:
    """Use `seconds` of this thread's CPU (not of wall time: a busy machine only makes it take longer)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def test_thread_cpu_counts_the_main_thread_a_live_thread_and_an_exited_one_apart() -> None:
    burnt, release = threading.Event(), threading.Event()

    def live() -> None:
        _burn(0.15)
        burnt.set()
        release.wait(60)

    live_thread = threading.Thread(target=live)
    cpu = ThreadCpu()
    cpu.start([os.getpid()])
    live_thread.start()
    exited = threading.Thread(target=_burn, args=(0.1,))
    exited.start()
    exited.join()
    _burn(0.1)
    assert burnt.wait(60)
    span = cpu.stop()  # the live thread is still there, waiting; the other one has gone
    release.set()
    live_thread.join()

    assert cpu.by_role[MAIN] >= 0.09, cpu.by_role
    # the live thread by its own clock, the exited one through what the process clock has left over
    assert cpu.by_role[OTHER] >= 0.24, cpu.by_role
    assert cpu.by_role[GRPC_CORE] == 0.0
    assert abs(span - cpu.total) < 1e-9  # one span: what stop() returns is all that was added
    per = cpu.per(10)
    assert abs(per["total"] - cpu.total * 100) < 1e-9
    assert abs(sum(per[role] for role in instance_cost.ROLES) - per["total"]) < 1e-9


def test_thread_seconds_of_a_gone_process_is_empty() -> None:
    gone = os.fork()
    if gone == 0:  # pragma: no cover - the child leaves at once
        os._exit(0)
    os.waitpid(gone, 0)
    assert instance_cost.thread_seconds(gone) == {}


def test_a_refresh_sample_inside_the_handler_counts_for_the_handler_not_the_token_check(
    tmp_path: Path,
) -> None:
    raw = tmp_path / "raw.txt"
    interceptor = "guarded (config_service/auth.py:332)"
    handler = "Refresh (config_service/refresh_servicer.py:94)"
    raw.write_text(
        # the handler runs inside the interceptor's frame: its own bucket wins
        f"Handle._run (asyncio/events.py:80);{interceptor};{handler} 3\n"
        # the refresh log line, inside the handler: logging's
        f"{interceptor};{handler};info (logging/__init__.py:1489) 2\n"
        # the token check alone
        f"{interceptor};credentials_of (config_service/auth.py:275) 1\n"
        # gRPC waking its poller, then the rest of its machinery, then the bare loop
        "0x7f (cygrpc.so);eventfd_write (libc.so.6);write (libc.so.6) 2\n"
        "0x7f (grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so) 1\n"
        "BaseEventLoop._run_once (asyncio/base_events.py:1884) 1\n"
    )
    shares = dict(pyspy.shares(raw, instance_cost.PROFILE_BUCKETS))
    assert shares["Refresh handler (validate, apply, swap)"] == 0.3
    assert shares["logging (the refresh log line)"] == 0.2
    assert shares["token check (the interceptor, the handler excluded)"] == 0.1
    assert shares["gRPC waking its poller thread (eventfd write)"] == 0.2
    assert shares["gRPC aio server machinery (the rest)"] == 0.1
    assert shares["asyncio event loop"] == 0.1
    assert shares["other"] == 0.0
