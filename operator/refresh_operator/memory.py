"""Giving freed memory back to the system: glibc's `malloc_trim(0)`, every TRIM_INTERVAL_SECONDS.

glibc keeps memory the process freed and hands it out again; it returns pages to the system only from the
top of its heap, and a heap whose top is still in use keeps every freed page below it resident. The
operator frees a lot at once after bursts: at startup it indexes every ConfigRoute and kopf resumes each
one (listings parsed, a status patch per route, a connection pool of TLS connections that close when
idle). Measured with 1,000 routes (bench/rss.py): 20 s after every route is Ready, glibc's in-use memory
is back to what it was with no route, yet RSS stays 55 MiB above it; `malloc_trim(0)` returns 15 MiB of
that at once. (Most of the rest is Python's own allocator: 1 MiB arenas that hold a few live objects
each, which only the interpreter can free, when an arena is empty.)

`malloc_trim` returns every whole free page of every glibc arena (not only the top of the heap) and takes
about 2 ms with 100 MiB in the heap; it runs on the blocking pool (ctypes releases the GIL), never on the
event loop. On a C library without it (musl) there is nothing to call and the loop does not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("refresh_operator.memory")

TRIM_INTERVAL_SECONDS = 30.0
"""How often freed memory is given back: short enough that the startup burst is returned within a minute
of the routes being indexed, long enough that a trim (about 2 ms on a pool thread) costs nothing."""


def malloc_trim() -> Callable[[], bool] | None:
    """glibc's `malloc_trim(0)` as a callable (True when it gave memory back); None without glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def call() -> bool:
        return bool(trim(0))

    return call


async def trim_periodically(
    stop: asyncio.Event,
    *,
    run: Callable[[Callable[[], bool]], Awaitable[bool]],
    trim: Callable[[], bool] | None = None,
    interval: float = TRIM_INTERVAL_SECONDS,
) -> None:
    """Until `stop` is set, every `interval` seconds: `trim` (default: glibc's) through `run` (the
    blocking pool). Returns at once when there is no trim to call."""
    trim = trim if trim is not None else malloc_trim()
    if trim is None:
        logger.info("No malloc_trim in this C library: freed memory is not given back periodically")
        return
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
            return
        try:
            await run(trim)
        except RuntimeError as error:  # the pool shut down under us: the operator is stopping
            logger.debug("malloc_trim skipped: %s", error)
