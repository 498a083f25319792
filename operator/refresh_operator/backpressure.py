"""Backpressure for the SQS receive loop: the operator holds at most `max_held_messages` messages.

A message is held from the receive that returned it until the consumer is done with it (deleted, or left
on the queue for a later receive). Under overload (changes arriving faster than the machine rolls them
out) an operator that kept receiving would hold the queue's whole backlog in memory, each message with
its handler task and visibility heartbeat, and its resident memory would grow for as long as the load
lasts. With the bound, the receive loop pauses while the operator holds that many: the rest of the
backlog waits in SQS, where it is durable, and nothing is lost (a message not received is never
deleted). A key's follow-up keeping only its latest message (coalescing.py, `rank`) keeps the held count
near the number of busy keys, so the pause is rare; the bound is what holds whatever the number of keys.
"""

from __future__ import annotations

import asyncio
import logging

from refresh_operator import metrics

logger = logging.getLogger("refresh_operator.consumer")


class Intake:
    """Counts held messages; `room` waits until the next receive may ask for at least one."""

    def __init__(self, *, bound: int) -> None:
        if bound < 1:
            raise ValueError("the bound must be at least 1")
        self.bound = bound
        self.held = 0
        self._room = asyncio.Event()
        self._room.set()

    def take(self, count: int) -> None:
        """`count` messages were received."""
        self.held += count
        metrics.CONSUMER_MESSAGES_HELD.set(self.held)
        if self.held >= self.bound:
            self._room.clear()

    def give_back(self, count: int) -> None:
        """`count` held messages are finished with (deleted, or left on the queue)."""
        self.held -= count
        metrics.CONSUMER_MESSAGES_HELD.set(self.held)
        if self.held < self.bound:
            self._room.set()

    async def room(self, stop: asyncio.Event) -> int:
        """How many messages the next receive may ask for (at least 1), after waiting while the bound is
        reached; returns 0 at once when `stop` is set (also while waiting)."""
        if self.held >= self.bound and not stop.is_set():
            loop = asyncio.get_running_loop()
            started = loop.time()
            logger.debug("%d messages held (max_held_messages): receiving paused", self.held)
            while self.held >= self.bound and not stop.is_set():
                waits = {asyncio.ensure_future(self._room.wait()), asyncio.ensure_future(stop.wait())}
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        waiting.cancel()
            metrics.CONSUMER_BACKPRESSURE_SECONDS.inc(loop.time() - started)
            logger.debug("%d messages held: receiving again", self.held)
        if stop.is_set():
            return 0
        return self.bound - self.held
