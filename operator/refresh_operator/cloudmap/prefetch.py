"""Discovery started with the change: the consumer asks Cloud Map for a route's instances as soon as it
has routed a change, beside its Parameter Store read and the ConfigRefresh create, and the rollout takes
that answer instead of asking again.

Why: on the whole path the rollout's discovery came after the read, the create and kopf's watch event, one
after the other; at 1,000 instances DiscoverInstances is the largest of them (about 20 ms on the local
stack, half of it botocore parsing the reply), so started with the read it is mostly done by the time the
rollout needs it. The rollout's own call stays: it is made whenever no prefetch is there to take.

What the rollout takes is as fresh as the change: a prefetch is used only by a rollout that starts within
``FRESH_SECONDS`` of it (a few milliseconds on a healthy operator; a handler delayed longer asks Cloud Map
itself), and each is taken once, so a later look (the departures check after a fan-out) asks again. A
prefetch that failed is not an answer: the rollout asks again and keeps its own retries. A replica whose
kopf handlers are paused (peering: another replica runs the rollouts) would only add calls, so prefetching
is on only while this replica has started a rollout in the last ``ACTIVE_SECONDS`` (a replica that has
just become standby still prefetches for that long: one DiscoverInstances more per change it receives).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from prometheus_client import Counter

from refresh_operator.cloudmap.client import Instance
from refresh_operator.cloudmap.discovery import healthy_instances

log = logging.getLogger(__name__)

FRESH_SECONDS = 1.0
"""The oldest prefetch a rollout takes (seconds since it started)."""
ACTIVE_SECONDS = 300.0
"""Prefetching stays on this long after this replica last started a rollout."""
MAX_PENDING = 256
"""Prefetches not yet taken that are kept; the oldest go first."""

PREFETCHES = Counter(
    "config_refresh_discovery_prefetches_total",
    "Cloud Map discoveries started with a change for its rollout, by what became of them (taken: the "
    "rollout used it; failed: the rollout asked again; unused: expired or displaced, never taken).",
    ["outcome"],
)

Key = tuple[str, str, tuple[tuple[str, str], ...]]


class HealthyInstances(Protocol):
    """``discovery.healthy_instances`` or a stand-in with its signature."""

    def __call__(
        self, client: Any, *, namespace: str, service: str, query_parameters: Mapping[str, str]
    ) -> Coroutine[Any, Any, list[Instance]]: ...


def _key(namespace: str, service: str, query_parameters: Mapping[str, str]) -> Key:
    return namespace, service, tuple(sorted(query_parameters.items()))


class DiscoveryPrefetch:
    """Prefetched discoveries by service and query, shared by the consumer (``start``) and the rollouts
    (``healthy_instances``); one per operator process, used from its event loop."""

    def __init__(
        self,
        *,
        discover: HealthyInstances = healthy_instances,
        fresh_seconds: float = FRESH_SECONDS,
        active_seconds: float = ACTIVE_SECONDS,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._discover = discover
        self._fresh = fresh_seconds
        self._active_for = active_seconds
        self._max_pending = max_pending
        self._clock = clock
        self._last_rollout: float | None = None
        self._pending: collections.OrderedDict[Key, tuple[float, asyncio.Task[list[Instance]]]] = (
            collections.OrderedDict()
        )

    def rollout_started(self) -> None:
        """This replica runs rollouts (its handlers are not paused): prefetching is worth its call."""
        self._last_rollout = self._clock()

    @property
    def active(self) -> bool:
        return self._last_rollout is not None and self._clock() - self._last_rollout <= self._active_for

    def start(
        self, client: Any, *, namespace: str, service: str, query_parameters: Mapping[str, str]
    ) -> bool:
        """Start discovering for a rollout about to be created; False when prefetching is off or an
        answer as fresh is already on its way."""
        if not self.active:
            return False
        self._expire()
        key = _key(namespace, service, query_parameters)
        if key in self._pending:
            return False
        task = asyncio.create_task(
            self._discover(client, namespace=namespace, service=service, query_parameters=query_parameters),
            name=f"discovery prefetch {namespace}/{service}",
        )
        task.add_done_callback(_retrieve)
        self._pending[key] = (self._clock(), task)
        while len(self._pending) > self._max_pending:
            self._drop(self._pending.popitem(last=False)[1][1])
        return True

    async def healthy_instances(
        self, client: Any, *, namespace: str, service: str, query_parameters: Mapping[str, str]
    ) -> list[Instance]:
        """The prefetched answer when one started within ``fresh_seconds``, else Cloud Map's answer now."""
        entry = self._pending.pop(_key(namespace, service, query_parameters), None)
        self._expire()  # what no rollout took (a duplicate create, another replica's rollout) goes now
        if entry is not None:
            started, task = entry
            if self._clock() - started <= self._fresh:
                try:
                    found = await asyncio.shield(task)
                except asyncio.CancelledError:
                    if not task.cancelled():
                        raise  # this rollout was cancelled, not the prefetch
                    PREFETCHES.labels("failed").inc()
                except Exception as exc:  # DiscoveryError or a bug: the call below decides
                    PREFETCHES.labels("failed").inc()
                    log.debug("prefetched discovery of %s/%s failed: %s", namespace, service, exc)
                else:
                    PREFETCHES.labels("taken").inc()
                    return found
            else:
                self._drop(task)
        return await self._discover(
            client, namespace=namespace, service=service, query_parameters=query_parameters
        )

    def _expire(self) -> None:
        now = self._clock()
        while self._pending:
            key, (started, task) = next(iter(self._pending.items()))
            if now - started <= self._fresh:
                return
            del self._pending[key]
            self._drop(task)

    @staticmethod
    def _drop(task: asyncio.Task[list[Instance]]) -> None:
        PREFETCHES.labels("unused").inc()
        task.cancel()


def _retrieve(task: asyncio.Task[list[Instance]]) -> None:
    """A prefetch nobody awaits must not log 'exception was never retrieved'."""
    if not task.cancelled():
        task.exception()
