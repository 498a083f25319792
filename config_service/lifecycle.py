"""Where the instance is in its life: bootstrapping, serving, or stopping.

Why a shared object: both servicers answer UNAVAILABLE until the bootstrap has loaded every prefix and
again once shutdown began, and the health services of both ports follow the same phase. One small object
passed to each of them keeps that rule in one place.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from datetime import datetime

from config_service.cache import utcnow


class Phase(enum.Enum):
    """The instance's phase; only SERVING serves reads and refreshes."""

    BOOTSTRAPPING = "bootstrapping"
    SERVING = "serving"
    STOPPING = "stopping"


Listener = Callable[[Phase], Awaitable[None]]


class Lifecycle:
    """The current phase, when the process started, and who to tell when the phase changes."""

    def __init__(self) -> None:
        self.phase = Phase.BOOTSTRAPPING
        self.started_at: datetime = utcnow()
        self._listeners: list[Listener] = []
        self.serving = asyncio.Event()

    @property
    def is_serving(self) -> bool:
        """True between a completed bootstrap and the start of shutdown."""
        return self.phase is Phase.SERVING

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(phase)` on every change (e.g. to set grpc health status)."""
        self._listeners.append(listener)

    async def set(self, phase: Phase) -> None:
        """Move to `phase`; STOPPING is final."""
        if self.phase is Phase.STOPPING:
            return
        self.phase = phase
        if phase is Phase.SERVING:
            self.serving.set()
        for listener in self._listeners:
            await listener(phase)
