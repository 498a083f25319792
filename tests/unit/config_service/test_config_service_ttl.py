"""The TTL safety net re-reads old entries without ever moving a version backwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from config_service.cache import ConfigCache, Entry, ValueType
from config_service.ttl import TtlRefresher
from tests.unit.fakes.parameter_store import FakeStore

P = "/config-service/acme/"
LONG_AGO = datetime.now(UTC) - timedelta(hours=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def held(name: str, version: int, *, loaded_at: datetime = LONG_AGO, minutes: int = 0) -> Entry:
    return Entry(name, f"v{version}", ValueType.STRING, version, T0 + timedelta(minutes=minutes), loaded_at)


async def test_due_entries_are_reread_in_batches_and_updated_confirmed_or_tombstoned() -> None:
    cache = ConfigCache(
        [held(f"{P}same{i}", 1) for i in range(12)]
        + [held(f"{P}changed", 1), held(f"{P}gone", 1), held(f"{P}fresh", 1, loaded_at=datetime.now(UTC))]
    )
    source = {f"{P}same{i}": held(f"{P}same{i}", 1) for i in range(12)}
    source[f"{P}changed"] = held(f"{P}changed", 2, minutes=5)
    source[f"{P}fresh"] = held(f"{P}fresh", 9, minutes=9)
    store = FakeStore(source)
    ttl = TtlRefresher(cache=cache, store=store, ttl_seconds=60, jitter=0.1)  # type: ignore[arg-type]

    reread = await ttl.run_once()

    assert reread == 14, "the entry loaded just now is not due"
    assert all(len(batch) <= 10 for batch in store.batches)
    changed = cache.get(f"{P}changed")
    assert changed is not None
    assert changed.version == 2
    assert cache.get(f"{P}gone") is None
    same = cache.get(f"{P}same0")
    assert same is not None
    assert same.version == 1
    assert same.loaded_at > LONG_AGO, "a confirmed entry is not due again at once"
    assert await ttl.run_once() == 0


async def test_a_reread_never_moves_a_version_backwards() -> None:
    cache = ConfigCache([held(f"{P}k", 5, minutes=5)])
    store = FakeStore({f"{P}k": held(f"{P}k", 4, minutes=4)})  # a lagging read
    await TtlRefresher(cache=cache, store=store, ttl_seconds=60, jitter=0).run_once()  # type: ignore[arg-type]
    entry = cache.get(f"{P}k")
    assert entry is not None
    assert entry.version == 5
