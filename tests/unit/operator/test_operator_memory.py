"""Giving freed memory back (refresh_operator.memory): glibc's malloc_trim, and the loop that calls it."""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

from refresh_operator.memory import malloc_trim, trim_periodically

BLOCK = 64 * 1024
"""Below glibc's mmap threshold: the blocks come from the heap, where free() keeps them resident."""
BLOCKS = 512


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_malloc_trim_returns_freed_heap_pages_that_free_kept() -> None:
    trim = malloc_trim()
    assert trim is not None  # the operator's image and this machine run glibc
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(BLOCK) for _ in range(BLOCKS)]
    assert all(blocks)
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)  # resident
    pin = libc.malloc(BLOCK)  # the heap's top stays in use, so free() cannot shrink the heap
    try:
        for block in blocks:
            libc.free(block)
        held = _rss_kib()
        assert trim() is True
        returned = held - _rss_kib()
    finally:
        libc.free(pin)
    # 32 MiB were freed below a block in use; the trim gives back at least half of them.
    assert returned >= BLOCKS * BLOCK // 1024 // 2, returned


async def _run_inline(fn: Callable[[], bool]) -> bool:
    return fn()


async def test_trim_runs_through_the_pool_until_stopped() -> None:
    stop = asyncio.Event()
    enough = asyncio.Event()
    calls: list[str] = []

    def trim() -> bool:
        calls.append("trim")
        if calls.count("trim") >= 3:
            enough.set()
        return True

    async def run(fn: Callable[[], bool]) -> bool:
        calls.append("run")
        return fn()

    task = asyncio.create_task(trim_periodically(stop, run=run, trim=trim, interval=0.01))
    await enough.wait()
    stop.set()
    await task
    assert calls[:6] == ["run", "trim"] * 3
    done = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == done  # nothing after stop


async def test_a_stop_before_the_first_interval_trims_nothing() -> None:
    stop = asyncio.Event()
    calls: list[bool] = []

    def trim() -> bool:
        calls.append(True)
        return True

    task = asyncio.create_task(trim_periodically(stop, run=_run_inline, trim=trim, interval=3600))
    stop.set()
    await task
    assert calls == []


async def test_a_pool_shut_down_under_the_loop_is_not_an_error() -> None:
    stop = asyncio.Event()
    attempts: list[int] = []

    async def run(fn: Callable[[], bool]) -> bool:
        attempts.append(1)
        if len(attempts) >= 2:
            stop.set()
        raise RuntimeError("cannot schedule new futures after shutdown")

    await trim_periodically(stop, run=run, trim=lambda: True, interval=0.01)
    assert len(attempts) == 2
