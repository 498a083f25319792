"""Starts a rollout's per-target tasks as concurrency slots free up, and stops them.

Its own object, not closures in the engine: a closure that starts tasks and a task body that calls it
back would refer to each other, and the rollout's tasks, targets and outcomes would then wait in that
reference cycle for a collection the operator runs seldom (refresh_operator/collector.py). The task body
gets the launcher as an argument instead, and lets go of it when it finishes.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from refresh_operator.fanout.targets import Target


class Launcher:
    """Starts one task per target as slots free up (``start_next``) until ``stop``."""

    def __init__(
        self, todo: Sequence[Target], one: Callable[[Target, Launcher], Coroutine[Any, Any, None]]
    ) -> None:
        self._pending = collections.deque(todo)
        self._one = one
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False  # the rollout is over or cancelled: start nothing more

    def start_next(self) -> None:
        if self._pending and not self._stopping:
            target = self._pending.popleft()
            self._tasks.append(
                asyncio.create_task(self._one(target, self), name=f"refresh {target.instance_id}")
            )

    async def stop(self, waiters: Sequence[asyncio.Task[bool]]) -> None:
        """Cancel what still runs and wait for it; then let go of the tasks (a cancelled task's
        exception holds its frame, which holds this launcher: a cycle)."""
        self._stopping = True
        for task in (*self._tasks, *waiters):
            task.cancel()
        await asyncio.gather(*self._tasks, *waiters, return_exceptions=True)
        self._tasks.clear()
        self._pending.clear()
