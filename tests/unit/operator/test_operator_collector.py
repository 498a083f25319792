"""The garbage collector settled after startup (collector.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from refresh_operator import collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_startup_objects_are_frozen_and_the_young_generation_grows_larger() -> None:
    kept = [[n] for n in range(1000)]  # lists: always tracked by the collector
    frozen = collector.settle_after_startup(young_threshold=12_345)
    assert frozen >= len(kept)
    # Frozen: in none of the generations a collection walks. (Not by comparing gc.get_freeze_count() with
    # `frozen` again: another thread freeing a frozen object meanwhile lowers it, as it did on a busy run.)
    walked = {id(thing) for thing in gc.get_objects()}
    assert not any(id(item) in walked for item in kept)
    assert id(kept) not in walked
    assert gc.get_threshold()[0] == 12_345


@pytest.mark.usefixtures("restored_collector")
def test_cycles_made_after_startup_are_still_collected() -> None:
    collector.settle_after_startup()

    class Node:
        partner: object = None

    first, second = Node(), Node()
    first.partner, second.partner = second, first
    del first, second
    assert gc.collect() >= 2
