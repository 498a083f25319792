"""Loads every parameter under the configured prefixes before the instance reports SERVING.

Why it retries forever: an instance that starts while Parameter Store throttles must not serve an empty
cache, and must not give up either (Kubernetes would restart it into the same throttling). It keeps
trying with capped exponential backoff with jitter, reporting NOT_SERVING the whole time; each
attempt already has botocore's own retries. A prefix is loaded as a whole (all pages) or not at all,
and all prefixes land in the cache in one swap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from config_service.backoff import equal_jitter
from config_service.cache import ConfigCache, Entry
from config_service.parameter_store import ParameterStore, error_code, is_throttling

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootstrapReport:
    """What the bootstrap loaded and how long it took."""

    parameters: int
    attempts: int
    seconds: float


async def bootstrap(
    *,
    cache: ConfigCache,
    store: ParameterStore,
    prefixes: Sequence[str],
    backoff_seconds: float,
    backoff_max_seconds: float,
) -> BootstrapReport:
    """Load all prefixes into `cache`, retrying until it succeeds."""
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            entries: list[Entry] = []
            for prefix in prefixes:
                entries.extend(await store.get_parameters_by_path(prefix))
        except (ClientError, BotoCoreError) as error:
            delay = equal_jitter(attempt, base_seconds=backoff_seconds, max_seconds=backoff_max_seconds)
            log.warning(
                "bootstrap attempt failed; retrying",
                extra={
                    "attempt": attempt,
                    "throttled": is_throttling(error),
                    "error": type(error).__name__,
                    "code": error_code(error),
                    "retry_in_seconds": round(delay, 3),
                },
            )
            await asyncio.sleep(delay)
            continue
        cache.apply_many(entries)
        report = BootstrapReport(len(entries), attempt, time.monotonic() - started)
        log.info(
            "bootstrap complete",
            extra={"parameters": report.parameters, "attempts": attempt, "seconds": round(report.seconds, 3)},
        )
        return report
