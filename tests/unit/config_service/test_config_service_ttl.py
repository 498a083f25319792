"""The TTL safety net re-reads old entries without ever moving a version backwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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


def aged(name: str, seconds: float) -> Entry:
    return held(name, 1, loaded_at=datetime.now(UTC) - timedelta(seconds=seconds))


def jitter_draws_half(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every entry's jitter draw is 0.5: with a TTL of 60 s and jitter 0.1 each is due at 57 s of age, and
    the top-up window reaches entries of 51 s and older."""
    monkeypatch.setattr("config_service.ttl.random.random", lambda: 0.5)


async def test_the_last_call_is_filled_with_the_entries_due_soonest_within_the_jitter_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jitter_draws_half(monkeypatch)
    entries = (
        [aged(f"{P}due{i}", 120) for i in range(3)]
        + [aged(f"{P}soon{i}", 52 + i) for i in range(4)]  # due in 1 to 4 s
        + [aged(f"{P}window-edge", 51.5), aged(f"{P}outside", 45), aged(f"{P}fresh", 1)]
    )
    store = FakeStore({entry.name: entry for entry in entries})
    ttl = TtlRefresher(cache=ConfigCache(entries), store=store, ttl_seconds=60, jitter=0.1)  # type: ignore[arg-type]

    assert await ttl.run_once() == 8

    assert len(store.batches) == 1, "the due entries and the top-up share one GetParameters call"
    assert sorted(store.batches[0]) == sorted(
        [f"{P}due{i}" for i in range(3)] + [f"{P}soon{i}" for i in range(4)] + [f"{P}window-edge"]
    )
    assert await ttl.run_once() == 0, "every entry read was stamped as loaded now"


async def test_the_top_up_takes_the_soonest_due_and_never_adds_a_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jitter_draws_half(monkeypatch)
    due = [aged(f"{P}due{i}", 120) for i in range(12)]
    soon = [aged(f"{P}soon{i}", 52 + i * 0.4) for i in range(12)]  # the higher i, the sooner due
    store = FakeStore({entry.name: entry for entry in due + soon})
    ttl = TtlRefresher(cache=ConfigCache(due + soon), store=store, ttl_seconds=60, jitter=0.1)  # type: ignore[arg-type]

    assert await ttl.run_once() == 20

    assert [len(batch) for batch in store.batches] == [10, 10]
    topped_up = [name for name in store.batches[1] if "/soon" in name]
    assert sorted(topped_up) == sorted(f"{P}soon{i}" for i in range(4, 12))
    assert {name for batch in store.batches for name in batch} >= {entry.name for entry in due}


async def test_a_round_with_nothing_due_reads_nothing_and_no_jitter_means_no_top_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jitter_draws_half(monkeypatch)
    entries = [aged(f"{P}soon{i}", 55) for i in range(5)]
    store = FakeStore({entry.name: entry for entry in entries})
    ttl = TtlRefresher(cache=ConfigCache(entries), store=store, ttl_seconds=60, jitter=0.1)  # type: ignore[arg-type]
    assert await ttl.run_once() == 0, "nearly due entries alone do not start a call"
    assert store.batches == []

    entries = [aged(f"{P}due", 61)] + [aged(f"{P}almost{i}", 59.5) for i in range(5)]
    store = FakeStore({entry.name: entry for entry in entries})
    ttl = TtlRefresher(cache=ConfigCache(entries), store=store, ttl_seconds=60, jitter=0)  # type: ignore[arg-type]
    assert await ttl.run_once() == 1
    assert store.batches == [[f"{P}due"]]
