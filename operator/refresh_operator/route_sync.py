"""The route index, kept in step from the API server when kopf's handlers are not watching.

kopf's ConfigRoute handlers keep `RouteIndex` current, but kopf peering pauses them on a standby replica,
while the SQS consumer runs on every replica (competing consumers). A standby would then take a message
for a route created after it started as unrouted and delete it: the change lost until the next resync.
So when a message matches no route, the consumer asks `RouteSync.refresh` to list the routes again before
it gives up. A refresh only adds or updates (never removes: a kopf handler on the active replica may have
just indexed a newer object than the list returned), and a newer object always wins by uid and generation.
Refreshes are shared and rate-limited, so a flood of genuinely unrouted messages costs one list per
`min_interval` seconds, not one per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from refresh_operator.routes import Route, RouteError, RouteIndex

logger = logging.getLogger("refresh_operator.route_sync")

ListRoutes = Callable[[], Awaitable[Sequence[Mapping[str, Any]]]]
Admit = Callable[[Mapping[str, Any]], Route]


def newer(candidate: Route, current: Route | None) -> bool:
    """Whether a listed route should replace the indexed one: same object at a later generation, or a
    re-created object (another uid) created later."""
    if current is None:
        return True
    if candidate.uid == current.uid:
        return candidate.generation > current.generation
    return (candidate.created_at or "") > (current.created_at or "")


class RouteSync:
    def __init__(
        self,
        *,
        index: RouteIndex,
        list_routes: ListRoutes,
        admit: Admit,
        min_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._index = index
        self._list = list_routes
        self._admit = admit
        self._min_interval = min_interval
        self._clock = clock
        self._last_started: float | None = None
        self._changes = 0
        self._lock = asyncio.Lock()

    def index_all(self, objects: Sequence[Mapping[str, Any]]) -> int:
        """Index every admissible object that is newer than what the index holds; the count indexed."""
        changed = 0
        for obj in objects:
            try:
                route = self._admit(obj)
            except RouteError as error:
                logger.warning("ConfigRoute %s not used: %s", (obj.get("metadata") or {}).get("name"), error)
                continue
            if newer(route, self._index.get(route.namespace, route.name)):
                self._index.upsert(route)
                changed += 1
        self._changes += changed
        return changed

    async def refresh(self) -> bool:
        """List the routes again unless a list started within `min_interval` (callers waiting on one in
        flight share it). True when the index gained or updated a route since the call, by this list or
        the one it waited for. A failed list is logged and reported as no change: the caller then treats
        the message as it would have without it."""
        requested, changes_before = self._clock(), self._changes
        async with self._lock:
            if self._last_started is not None and requested - self._last_started < self._min_interval:
                return self._changes > changes_before
            self._last_started = self._clock()
            try:
                objects = await self._list()
            except Exception as error:  # any API failure only means no fresher routes
                logger.warning("Listing ConfigRoutes again failed (%s)", error)
                return False
            changed = self.index_all(objects)
        if changed:
            logger.info("Indexed %d ConfigRoute(s) the watch had not delivered here", changed)
        return self._changes > changes_before
