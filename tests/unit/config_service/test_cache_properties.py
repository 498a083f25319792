"""Property tests: whatever the interleaving, the cache ends at the newest change and never goes back."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from config_service.cache import ConfigCache, Entry, ValueType

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
NAME = "/config-service/acme/key"

# A change is (minutes after T0, version, deleted); distinct keys so "the newest" is well defined.
changes = st.lists(
    st.tuples(st.integers(0, 50), st.integers(1, 20), st.booleans()),
    min_size=1,
    max_size=40,
    unique_by=lambda change: (change[0], change[1]),
)


def to_entry(change: tuple[int, int, bool]) -> Entry:
    minutes, version, deleted = change
    return Entry(
        name=NAME,
        value="" if deleted else f"value-{minutes}-{version}",
        value_type=ValueType.STRING,
        version=version,
        last_modified=T0 + timedelta(minutes=minutes),
        loaded_at=T0,
        deleted=deleted,
    )


def key(entry: Entry) -> tuple[datetime, int]:
    assert entry.last_modified is not None
    return (entry.last_modified, entry.version)


@given(changes, st.randoms(use_true_random=False))
def test_any_order_of_refreshes_and_deletes_ends_at_the_newest(
    batch: list[tuple[int, int, bool]], rng: random.Random
) -> None:
    order = list(batch)
    rng.shuffle(order)
    cache = ConfigCache()
    seen: list[tuple[datetime, int]] = []
    for change in order:
        cache.apply(to_entry(change))
        held = cache.snapshot.raw(NAME)
        assert held is not None
        seen.append(key(held))
    newest = max(batch, key=lambda change: (change[0], change[1]))
    final = cache.snapshot.raw(NAME)
    assert final is not None
    assert key(final) == key(to_entry(newest))
    assert final.deleted == newest[2]
    if not newest[2]:
        live = cache.get(NAME)
        assert live is not None
        assert live.value == f"value-{newest[0]}-{newest[1]}"
    assert seen == sorted(seen), "a reader saw the version go backwards"


@settings(max_examples=30, deadline=None)
@given(changes, st.integers(2, 4))
def test_concurrent_writers_never_let_a_reader_see_a_version_go_backwards(
    batch: list[tuple[int, int, bool]], writers: int
) -> None:
    cache = ConfigCache()
    done = threading.Event()
    observed: list[tuple[datetime, int]] = []

    def read() -> None:
        while not done.is_set():
            held = cache.snapshot.raw(NAME)
            if held is not None:
                observed.append(key(held))
        held = cache.snapshot.raw(NAME)
        if held is not None:
            observed.append(key(held))

    def write(part: list[tuple[int, int, bool]]) -> None:
        for change in part:
            cache.apply(to_entry(change))

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(batch[i::writers],)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    newest = max(batch, key=lambda change: (change[0], change[1]))
    final = cache.snapshot.raw(NAME)
    assert final is not None
    assert key(final) == key(to_entry(newest))
    assert observed == sorted(observed), "a reader saw the version go backwards"
