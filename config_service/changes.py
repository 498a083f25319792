"""Brings the cache's applied-change notifications onto one event loop, for the local delivery.

Why a bridge: `ConfigCache` calls its listeners on the writer's thread (the event loop for a pushed
refresh, possibly another thread in an embedding service) and must never wait on them. `ChangeFeed` only
records that something changed and wakes its waiters on its own loop (`call_soon_threadsafe` when called
from elsewhere). A waiter always re-reads the current snapshot after waking, so coalesced or missed wake-ups
lose nothing: a long poll compares versions, the file writer rewrites from the latest snapshot.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

from config_service.cache import ConfigCache, Entry


class ChangeFeed:
    """A generation counter and an event, bumped and set each time the cache applies a change."""

    def __init__(self, cache: ConfigCache, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._changed = asyncio.Event()
        self.generation = 0
        self.applied_at = 0.0  # time.monotonic() of the latest applied change, taken on the writer's thread
        self._subscribers: list[Callable[[tuple[str, ...]], None]] = []
        cache.add_listener(self._on_applied)

    def subscribe(self, callback: Callable[[tuple[str, ...]], None]) -> None:
        """Call `callback(names)` on the loop for every applied change (it must not block); the change's
        time is `applied_at` during the call."""
        self._subscribers.append(callback)

    def _on_applied(self, applied: Sequence[Entry]) -> None:
        names = tuple(entry.name for entry in applied)
        at = time.monotonic()
        if threading.get_ident() == self._loop_thread:
            self._wake(names, at)
        else:
            self._loop.call_soon_threadsafe(self._wake, names, at)

    def _wake(self, names: tuple[str, ...], at: float) -> None:
        self.generation += 1
        self.applied_at = at
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for callback in self._subscribers:
            callback(names)

    def next_change(self) -> asyncio.Event:
        """The event the next applied change sets (take it before reading the snapshot, then wait on it)."""
        return self._changed
