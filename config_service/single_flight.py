"""Single-flight: concurrent callers asking for the same key share one in-flight call.

Why: in INVALIDATE mode every instance re-reads a changed parameter from Parameter Store, and retries or a
burst of refreshes for one name can arrive together. Only one read per name is in flight at a time;
callers that arrive meanwhile await the same result (or the same exception).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Deduplicates concurrent calls by key; the call runs in its own task so a cancelled caller can't
    cancel it for the others."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[T]] = {}

    def in_flight(self, key: str) -> bool:
        """Whether a call for `key` is running now."""
        return key in self._flights

    async def do(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call` unless one is in flight for `key`; either way return its result."""
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._run(key, call))
            self._flights[key] = flight
            # Retrieve the outcome even if every caller was cancelled, so nothing is reported as lost.
            flight.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(flight)

    async def _run(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        finally:
            self._flights.pop(key, None)
