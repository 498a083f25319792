"""The process-local hand-over of parameter values from the consumer to the rollout handler.

The consumer has just read the parameter; writing the value into the ConfigRefresh would put secrets in
etcd, and reading it again in the handler would double Parameter Store traffic. So the snapshot waits here,
keyed by the object's namespace and name, until the handler takes it. Entries are bounded in number and
age; a handler that finds nothing (after a restart, on another replica, for a manual trigger) reads
Parameter Store itself.

It also hands back the other way: the rollout handler reports each ConfigRefresh it finished
(`fan_out_done`), and the consumer waits for the fan-outs its run created (`wait_fan_out`) before the key
counts as quiet again (see coalescing.py: a key's run covers its fan-out), so changes that arrive while a
slow, loaded fan-out goes on merge into one follow-up instead of starting rollouts that supersede it.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time

from refresh_operator.parameter_store import ParameterSnapshot


class ValueCache:
    def __init__(self, *, max_entries: int = 1024, ttl_seconds: float = 600.0) -> None:
        self._entries: collections.OrderedDict[tuple[str, str], tuple[float, ParameterSnapshot]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._done: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._waiters: dict[tuple[str, str], list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def put(self, namespace: str, name: str, snapshot: ParameterSnapshot) -> None:
        with self._lock:
            self._entries[(namespace, name)] = (time.monotonic(), snapshot)
            self._entries.move_to_end((namespace, name))
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def take(self, namespace: str, name: str) -> ParameterSnapshot | None:
        with self._lock:
            entry = self._entries.pop((namespace, name), None)
        if entry is None or time.monotonic() - entry[0] > self._ttl:
            return None
        return entry[1]

    def fan_out_done(self, namespace: str, name: str) -> None:
        """The rollout of ConfigRefresh `namespace/name` reached a final phase (any thread or loop)."""
        key = (namespace, name)
        with self._lock:
            self._done[key] = None
            self._done.move_to_end(key)
            while len(self._done) > self._max_entries:
                self._done.popitem(last=False)
            waiters = self._waiters.pop(key, [])
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    async def wait_fan_out(self, namespace: str, name: str) -> None:
        """Return once the rollout of `namespace/name` has finished in this process (the caller bounds
        the wait: on another replica, or after a restart, it never finishes here)."""
        key = (namespace, name)
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            if key in self._done:
                return
            self._waiters.setdefault(key, []).append(waiter)
        try:
            await event.wait()
        finally:
            with self._lock:
                waiting = self._waiters.get(key)
                if waiting is not None and waiter in waiting:
                    waiting.remove(waiter)
                    if not waiting:
                        del self._waiters[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
