"""The in-memory cache: an immutable snapshot swapped by reference, so readers never wait.

Why this shape: applications read on every request, refreshes arrive rarely but in bursts. A reader takes
`cache.snapshot` (one attribute read, atomic in CPython) and uses that object to the end of its request:
a request that started on the old value finishes on it, and no reader ever takes a lock. Writers build a
new mapping and swap the reference under a writer lock, so two writers cannot lose each other's changes.

Versions only move forward. Each entry carries an ordering key `(last_modified, version)`: Parameter Store
versions restart at 1 after a delete and re-create, so the modification time orders first. A change that
is not newer than what is held is answered STALE and changes nothing. A delete leaves a tombstone with its
own key, so a late, older upsert cannot resurrect the key (on an equal key the tombstone wins). When
either side lacks a modification time (a refresh that did not carry one), only versions are compared.

Listeners (`add_listener`) hear of every swap that applied something, with the entries applied (a
re-read that only confirmed a version is not a change). They run on the writer's thread right after the
swap, outside the lock: they must only note the change and return (the local delivery schedules its work
on its event loop); one that raises is logged and never fails the writer.

This module knows nothing about gRPC or AWS: any Python service can embed it.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

log = logging.getLogger(__name__)


class ValueType(enum.Enum):
    """The Parameter Store type of a value (the names are Parameter Store's own)."""

    STRING = "String"
    STRING_LIST = "StringList"
    SECURE_STRING = "SecureString"


@dataclass(frozen=True, slots=True)
class Entry:
    """One parameter as held by the cache; `deleted` marks a tombstone (its value is empty)."""

    name: str
    value: str
    value_type: ValueType
    version: int
    last_modified: datetime | None
    loaded_at: datetime
    deleted: bool = False

    def __repr__(self) -> str:
        # A SecureString value must never reach a log line through a repr.
        shown = "<redacted>" if self.value_type is ValueType.SECURE_STRING else repr(self.value)
        return (
            f"Entry(name={self.name!r}, value={shown}, value_type={self.value_type.value}, "
            f"version={self.version}, last_modified={self.last_modified}, deleted={self.deleted})"
        )

    __str__ = __repr__


def is_newer(candidate: Entry, held: Entry | None) -> bool:
    """Whether `candidate` orders strictly after `held` by (last_modified, version).

    On equal keys a tombstone wins over a live entry: the delete of version N happened after N was written.
    """
    if held is None:
        return True
    if candidate.last_modified is None or held.last_modified is None:
        return (candidate.version, candidate.deleted) > (held.version, held.deleted)
    return (candidate.last_modified, candidate.version, candidate.deleted) > (
        held.last_modified,
        held.version,
        held.deleted,
    )


def same_key(candidate: Entry, held: Entry) -> bool:
    """Whether two entries carry the same ordering key and liveness."""
    return (
        candidate.version == held.version
        and candidate.last_modified == held.last_modified
        and candidate.deleted == held.deleted
    )


class Outcome(enum.Enum):
    """What `ConfigCache.apply` did."""

    APPLIED = "applied"
    STALE = "stale"
    CONFIRMED = "confirmed"  # same version re-read from the source: only loaded_at moved


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The outcome of one change and the entry held afterwards."""

    outcome: Outcome
    held: Entry


SHARDS = 64  # a power of two: a swap copies one shard of about n/64 entries, not the whole map


def _shard_of(name: str) -> int:
    return hash(name) & (SHARDS - 1)


class Snapshot:
    """An immutable view of the cache at one instant; safe to share between threads and tasks.

    Entries live in `SHARDS` dicts keyed by name hash. A swap builds a new Snapshot that shares every
    shard it did not touch and copies the ones it did, so a refresh costs O(n / SHARDS), not O(n). Nothing
    mutates a shard once a Snapshot holds it.
    """

    __slots__ = ("_count", "_shards", "_sorted_names", "created_at")

    def __init__(
        self, shards: tuple[dict[str, Entry], ...], created_at: datetime, count: int | None = None
    ) -> None:
        self._shards = shards
        # Counted once here, or carried forward by with_changes (a refresh must not walk every shard).
        self._count = sum(len(shard) for shard in shards) if count is None else count
        self._sorted_names: tuple[str, ...] | None = None
        self.created_at = created_at

    @classmethod
    def of(cls, entries: Iterable[Entry], created_at: datetime) -> Snapshot:
        """A snapshot holding `entries` (the last one wins for a repeated name)."""
        shards: tuple[dict[str, Entry], ...] = tuple({} for _ in range(SHARDS))
        for entry in entries:
            shards[_shard_of(entry.name)][entry.name] = entry
        return cls(shards, created_at)

    def with_changes(self, changed: Mapping[str, Entry], created_at: datetime) -> Snapshot:
        """A new snapshot with `changed` entries replaced; untouched shards are shared, not copied."""
        shards = list(self._shards)
        copied: set[int] = set()
        count = self._count
        for name, entry in changed.items():
            index = _shard_of(name)
            if index not in copied:
                shards[index] = dict(shards[index])
                copied.add(index)
            count += name not in shards[index]
            shards[index][name] = entry
        return Snapshot(tuple(shards), created_at, count)

    def get(self, name: str) -> Entry | None:
        """The live entry for `name`, or None when absent or deleted."""
        entry = self._shards[_shard_of(name)].get(name)
        if entry is None or entry.deleted:
            return None
        return entry

    def raw(self, name: str) -> Entry | None:
        """The entry for `name`, tombstones included."""
        return self._shards[_shard_of(name)].get(name)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Entry]:
        for shard in self._shards:
            yield from shard.values()

    def sorted_names(self) -> tuple[str, ...]:
        """All names (tombstones included), sorted; computed once per snapshot."""
        if self._sorted_names is None:
            self._sorted_names = tuple(sorted(name for shard in self._shards for name in shard))
        return self._sorted_names

    def live_count(self) -> int:
        """How many entries are not tombstones."""
        return sum(1 for entry in self if not entry.deleted)


def utcnow() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


class ConfigCache:
    """Holds the current `Snapshot`; `apply` and `apply_many` are the only writers."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._write_lock = threading.Lock()
        self._snapshot = Snapshot.of(entries, utcnow())
        self._listeners: list[Callable[[Sequence[Entry]], None]] = []

    def add_listener(self, listener: Callable[[Sequence[Entry]], None]) -> None:
        """Call `listener(applied_entries)` after every swap that applied a change (see the module doc)."""
        self._listeners.append(listener)

    @property
    def snapshot(self) -> Snapshot:
        """The current snapshot: take it once per request and read only from it."""
        return self._snapshot

    def get(self, name: str) -> Entry | None:
        """The live entry for `name` in the current snapshot."""
        return self._snapshot.get(name)

    def apply(self, entry: Entry) -> ApplyResult:
        """Swap in `entry` if it is newer than what is held; otherwise change nothing (STALE)."""
        return self.apply_many([entry])[0]

    def apply_many(self, entries: Iterable[Entry], *, confirm: bool = False) -> list[ApplyResult]:
        """Apply several changes in one swap (bootstrap, TTL re-reads); one result per entry, in order.

        With `confirm` (a re-read from the source), an entry with the same version as the one held moves
        the held entry's `loaded_at` forward (CONFIRMED) instead of being STALE.
        """
        results: list[ApplyResult] = []
        with self._write_lock:
            current = self._snapshot
            changed: dict[str, Entry] = {}
            for entry in entries:
                held = changed.get(entry.name) or current.raw(entry.name)
                if is_newer(entry, held):
                    changed[entry.name] = entry
                    results.append(ApplyResult(Outcome.APPLIED, entry))
                elif (
                    confirm
                    and held is not None
                    and same_key(entry, held)
                    and entry.loaded_at > held.loaded_at
                ):
                    confirmed = replace(held, loaded_at=entry.loaded_at)
                    changed[entry.name] = confirmed
                    results.append(ApplyResult(Outcome.CONFIRMED, confirmed))
                else:
                    assert held is not None
                    results.append(ApplyResult(Outcome.STALE, held))
            if changed:
                self._snapshot = current.with_changes(changed, utcnow())
        applied = [result.held for result in results if result.outcome is Outcome.APPLIED]
        if applied:
            for listener in tuple(self._listeners):
                try:
                    listener(applied)
                except Exception:
                    log.exception("cache listener failed")
        return results
