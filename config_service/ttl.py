"""The safety net: entries older than a TTL are re-read from Parameter Store in the background.

Why stale-while-revalidate: a pushed refresh can be lost (events are best-effort), so every entry is
re-read at least once per TTL. Reads are never blocked by it: the old entry keeps being served while the
re-read runs, and the result goes through the same versioned `apply` as a pushed change (a re-read never
moves a version backwards; one that finds the same version only moves `loaded_at`). Each entry's due
time is made earlier by a random fraction (`jitter`) so a fleet that bootstrapped together does not
re-read together, and names are read ten at a time with GetParameters to stay within Parameter Store's
shared throughput. A TTL of 0 disables it.

A round's last call is filled up to ten names with the entries due soonest, if they fall due within the
jitter window (TTL x jitter) anyway. Why: each re-read draws a fresh jitter, so the entries of one
instance drift apart over a window of TTL x jitter, longer than the interval between rounds; without the
top-up an instance holding 10 parameters made about three calls per TTL of three names each (the idle
benchmark: 1,050 GetParameters in 180 s for 100 instances where 300 would do). An entry is then re-read
at most TTL x jitter earlier than its own jitter made it due: never before (1 - 2 x jitter) x TTL. The
instances stay desynchronised from each other: the round that tops up is set by the instance's own
earliest due entry. The top-up never adds a call, and a jitter of 0 turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from config_service.cache import ConfigCache, Entry, Outcome, utcnow
from config_service.metrics import Metrics
from config_service.parameter_store import ParameterStore

log = logging.getLogger(__name__)

BATCH = 10


class TtlRefresher:
    """Runs `run_once` every `interval` seconds until cancelled."""

    def __init__(
        self,
        *,
        cache: ConfigCache,
        store: ParameterStore,
        ttl_seconds: float,
        jitter: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._cache = cache
        self._store = store
        self._ttl = ttl_seconds
        self._jitter = jitter
        self._metrics = metrics
        self._offsets: dict[str, float] = {}

    @property
    def interval(self) -> float:
        """How often due entries are looked for: a tenth of the TTL, between 0.1 s and 30 s."""
        return min(30.0, max(0.1, self._ttl / 10))

    async def run(self) -> None:
        """Loop forever (cancel the task to stop)."""
        if self._ttl <= 0:
            return
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except (ClientError, BotoCoreError) as error:
                log.warning("TTL re-read failed; will retry", extra={"error": type(error).__name__})
                self._count("error")
            except Exception:
                # The safety net must outlive a bug in one round; the traceback names no value.
                log.exception("TTL re-read round crashed; will retry")
                self._count("error")

    def _draw_offset(self) -> float:
        return self._ttl * (1 - self._jitter * random.random())

    def _due_at(self, entry: Entry) -> datetime:
        offset = self._offsets.get(entry.name)
        if offset is None:
            offset = self._offsets[entry.name] = self._draw_offset()
        return entry.loaded_at + timedelta(seconds=offset)

    def to_read(self) -> list[Entry]:
        """The entries whose (jittered) TTL has passed, then (when they leave the last call short of ten
        names) the entries due soonest within the jitter window, up to ten names in it (see the module
        doc)."""
        now = utcnow()
        due: list[Entry] = []
        soon: list[tuple[datetime, Entry]] = []
        horizon = now + timedelta(seconds=self._ttl * self._jitter)
        for entry in self._cache.snapshot:
            due_at = self._due_at(entry)
            if due_at <= now:
                due.append(entry)
            elif due_at <= horizon:
                soon.append((due_at, entry))
        room = -len(due) % BATCH
        if not due or not room or not soon:
            return due
        soon.sort(key=lambda pair: pair[0])
        return due + [entry for _, entry in soon[:room]]

    async def run_once(self) -> int:
        """Re-read every due entry (and the top-up, see `to_read`); returns how many were read."""
        due = self.to_read()
        for start in range(0, len(due), BATCH):
            batch = due[start : start + BATCH]
            found, missing = await self._store.get_parameters([entry.name for entry in batch])
            now = utcnow()
            candidates = list(found)
            held = {entry.name: entry for entry in batch}
            for name in missing:
                entry = held[name]
                if entry.deleted:
                    # Still gone: only confirm, so it is not re-read every interval.
                    candidates.append(
                        Entry(
                            name, "", entry.value_type, entry.version, entry.last_modified, now, deleted=True
                        )
                    )
                else:
                    candidates.append(
                        Entry(name, "", entry.value_type, entry.version, now, now, deleted=True)
                    )
            for result in self._cache.apply_many(candidates, confirm=True):
                self._count(
                    "deleted"
                    if result.held.deleted and result.outcome is Outcome.APPLIED
                    else result.outcome.value
                )
            for entry in batch:
                # A fresh jitter for the next round.
                self._offsets[entry.name] = self._draw_offset()
        if due:
            log.info("TTL re-read", extra={"parameters": len(due)})
        return len(due)

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.ttl_rereads.labels(outcome=outcome).inc()
