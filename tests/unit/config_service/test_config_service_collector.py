"""config-service's collector, settled once the bootstrap is done (config_service/collector.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from config_service import collector


@pytest.fixture(autouse=True)
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_what_the_process_holds_is_frozen_and_only_the_young_threshold_changes() -> None:
    _, middle, oldest = gc.get_threshold()
    held = [[n] for n in range(2000)]  # lists: always tracked by the collector
    frozen = collector.settle(young_generation_threshold=9_000)
    assert frozen >= len(held)
    # Frozen: in none of the generations a collection walks (gc.get_freeze_count() is not compared with
    # `frozen` again: another thread freeing a frozen object meanwhile lowers it).
    walked = {id(thing) for thing in gc.get_objects()}
    assert not any(id(item) in walked for item in held)
    assert gc.get_threshold() == (9_000, middle, oldest)


def test_a_cycle_made_after_settling_is_still_collected() -> None:
    collector.settle()
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
