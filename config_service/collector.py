"""The cyclic garbage collector of a config-service process, set once the bootstrap has loaded the cache.

Why: a fleet's rollout is over when its slowest instance answers, so the pause that matters is the one
an instance takes in the middle of a Refresh. With the interpreter's defaults, the oldest generation is
walked every few seconds under load, and in this process it holds mostly what never dies: the modules of
grpc, protobuf and botocore, the clients, the cache. Measured on the scale row's endpoint hosts (issue 20,
config-service's own refresh path, 500 endpoints per process): 40 full collections of up to 35 ms and 386
of the middle generation in 90 rollouts of 1,000 targets; settled as below, none of either.

`settle()` runs one full collection, freezes what survived (`gc.freeze()`: those objects are still freed
by reference counting, only skipped by the cyclic collector), and lets the young generation grow larger
before it is collected, so the objects of one Refresh mostly die young. Only `serve()` (the standalone
process) has it run, just before the instance reports SERVING, so the one full collection pauses no
caller; a service embedding the cache keeps its own collector settings.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("config_service.collector")

YOUNG_GENERATION_THRESHOLD = 20_000
"""Net allocations of tracked objects between two young collections (the interpreter's default is 700)."""


def settle(young_generation_threshold: int = YOUNG_GENERATION_THRESHOLD) -> int:
    """Collect, freeze the survivors and widen the young generation; returns the number of objects frozen."""
    began = time.perf_counter()
    gc.collect()
    gc.freeze()
    thresholds = list(gc.get_threshold())
    thresholds[0] = young_generation_threshold
    gc.set_threshold(*thresholds)
    log.info(
        "garbage collector settled",
        extra={
            "frozen_objects": gc.get_freeze_count(),
            "took_ms": round((time.perf_counter() - began) * 1000, 1),
            "young_generation_threshold": young_generation_threshold,
        },
    )
    return gc.get_freeze_count()
