"""The process-local hand-over of parameter values from the consumer to the rollout handler.

The consumer has just read the parameter; writing the value into the ConfigRefresh would put secrets in
etcd, and reading it again in the handler would double Parameter Store traffic. So the snapshot waits here,
keyed by the object's namespace and name, until the handler takes it. Entries are bounded in number and
age; a handler that finds nothing (after a restart, on another replica, for a manual trigger) reads
Parameter Store itself.
"""

from __future__ import annotations

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

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
