"""The cache's versioning rules, one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from config_service.cache import ConfigCache, Entry, Outcome, ValueType

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
NAME = "/config-service/acme/orders/db_url"


def entry(version: int, minutes: int = 0, *, value: str | None = None, deleted: bool = False) -> Entry:
    return Entry(
        name=NAME,
        value="" if deleted else (value or f"value-{version}"),
        value_type=ValueType.STRING,
        version=version,
        last_modified=T0 + timedelta(minutes=minutes),
        loaded_at=datetime.now(UTC),
        deleted=deleted,
    )


def test_a_newer_version_is_applied_and_readable() -> None:
    cache = ConfigCache()
    assert cache.apply(entry(1)).outcome is Outcome.APPLIED
    assert cache.apply(entry(2, 1)).outcome is Outcome.APPLIED
    held = cache.get(NAME)
    assert held is not None
    assert (held.version, held.value) == (2, "value-2")


def test_the_same_or_an_older_version_is_stale_and_changes_nothing() -> None:
    cache = ConfigCache([entry(3, 3)])
    before = cache.snapshot
    for late in (entry(3, 3, value="other"), entry(2, 2)):
        result = cache.apply(late)
        assert result.outcome is Outcome.STALE
        assert result.held.version == 3
    assert cache.snapshot is before


def test_a_delete_leaves_a_tombstone_that_an_older_upsert_cannot_resurrect() -> None:
    cache = ConfigCache([entry(4, 4)])
    assert cache.apply(entry(4, 5, deleted=True)).outcome is Outcome.APPLIED
    assert cache.get(NAME) is None
    assert cache.apply(entry(4, 4)).outcome is Outcome.STALE
    assert cache.get(NAME) is None
    tombstone = cache.snapshot.raw(NAME)
    assert tombstone is not None
    assert tombstone.deleted


def test_a_recreated_parameter_with_a_restarted_version_wins_by_modification_time() -> None:
    cache = ConfigCache([entry(7, 1)])
    cache.apply(entry(7, 2, deleted=True))
    result = cache.apply(entry(1, 3))
    assert result.outcome is Outcome.APPLIED
    held = cache.get(NAME)
    assert held is not None
    assert held.version == 1


def test_without_a_modification_time_only_versions_are_compared() -> None:
    cache = ConfigCache([entry(2, 10)])
    undated_older = Entry(NAME, "x", ValueType.STRING, 2, None, datetime.now(UTC))
    undated_newer = Entry(NAME, "y", ValueType.STRING, 3, None, datetime.now(UTC))
    assert cache.apply(undated_older).outcome is Outcome.STALE
    assert cache.apply(undated_newer).outcome is Outcome.APPLIED


def test_rereading_the_same_version_only_moves_loaded_at() -> None:
    first = entry(5, 5)
    cache = ConfigCache([first])
    later = Entry(
        NAME, first.value, first.value_type, 5, first.last_modified, first.loaded_at + timedelta(minutes=10)
    )
    assert cache.apply(later).outcome is Outcome.STALE, "a pushed refresh of the same version changes nothing"
    result = cache.apply_many([later], confirm=True)[0]
    assert result.outcome is Outcome.CONFIRMED
    assert result.held.loaded_at == later.loaded_at
    assert result.held.version == 5


def test_a_reader_keeps_the_snapshot_it_started_with() -> None:
    cache = ConfigCache([entry(1)])
    snapshot = cache.snapshot
    cache.apply(entry(2, 1))
    old = snapshot.get(NAME)
    new = cache.get(NAME)
    assert old is not None
    assert new is not None
    assert (old.version, new.version) == (1, 2)


def test_a_secure_string_value_never_shows_in_a_repr() -> None:
    secret = Entry(NAME, "s3cr3t-value", ValueType.SECURE_STRING, 1, T0, T0)
    assert "s3cr3t-value" not in repr(secret)
    assert "s3cr3t-value" not in str(ConfigCache([secret]).snapshot.raw(NAME))


def test_apply_many_swaps_once_and_keeps_the_newest_per_name() -> None:
    cache = ConfigCache()
    results = cache.apply_many([entry(1), entry(3, 3), entry(2, 2)])
    assert [result.outcome for result in results] == [Outcome.APPLIED, Outcome.APPLIED, Outcome.STALE]
    held = cache.get(NAME)
    assert held is not None
    assert held.version == 3


def test_an_old_snapshot_is_untouched_by_any_number_of_later_swaps() -> None:
    names = [f"/config-service/acme/k{i}" for i in range(1000)]
    cache = ConfigCache(Entry(name, "v1", ValueType.STRING, 1, T0, T0) for name in names)
    old = cache.snapshot
    for name in names[::7]:
        cache.apply(Entry(name, "v2", ValueType.STRING, 2, T0 + timedelta(minutes=1), T0))
    new = cache.snapshot
    assert len(old) == len(new) == 1000
    assert all((entry.version, entry.value) == (1, "v1") for entry in old)
    for index, name in enumerate(names):
        held = new.get(name)
        assert held is not None
        assert held.version == (2 if index % 7 == 0 else 1)
    assert new.sorted_names() == tuple(sorted(names))


def test_the_count_carried_across_swaps_matches_the_entries_held() -> None:
    """A swap carries the entry count forward instead of recounting every shard: new names add, replaced
    ones and tombstones do not."""
    cache = ConfigCache(Entry(f"/p/{i}", "v", ValueType.STRING, 1, T0, datetime.now(UTC)) for i in range(100))
    cache.apply_many(
        [Entry(f"/p/{i}", "w", ValueType.STRING, 2, T0, datetime.now(UTC)) for i in range(90, 130)]
    )
    cache.apply(Entry("/p/5", "", ValueType.STRING, 3, T0, datetime.now(UTC), deleted=True))
    snapshot = cache.snapshot
    assert len(snapshot) == sum(1 for _ in snapshot) == 130
    assert snapshot.live_count() == 129
