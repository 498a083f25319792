"""Applies one pushed change to the cache: the domain logic behind RefreshService.Refresh.

Why apart from the servicer: it has no gRPC in it, so an embedding service can call it directly and the
unit tests exercise it without a server. VALUE mode applies the pushed value. INVALIDATE mode re-reads the
parameter from Parameter Store, once per name however many refreshes for it arrive together (single
flight), and applies what it read only if it is at least the requested version; a read that was already
in flight and returns an older version is followed by one fresh read before the change is REJECTED. A
DELETE writes a tombstone; without a modification time the tombstone is dated when it was received.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from config_service.cache import ConfigCache, Entry, Outcome, ValueType, utcnow
from config_service.errors import InvalidArgument
from config_service.parameter_store import ParameterStore
from config_service.single_flight import SingleFlight

log = logging.getLogger(__name__)


class Operation(enum.Enum):
    """Whether the parameter was written or deleted."""

    UPSERT = "upsert"
    DELETE = "delete"


class PayloadMode(enum.Enum):
    """Whether the value travels with the change or is re-read by the instance."""

    VALUE = "value"
    INVALIDATE = "invalidate"


class Result(enum.Enum):
    """What the instance did with a change."""

    APPLIED = "applied"
    STALE = "stale"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Change:
    """One validated change of one parameter."""

    name: str
    operation: Operation
    mode: PayloadMode
    version: int
    last_modified: datetime | None
    value: str = ""
    value_type: ValueType = ValueType.STRING
    refresh_id: str = ""

    def __repr__(self) -> str:
        return (
            f"Change(name={self.name!r}, operation={self.operation.value}, mode={self.mode.value}, "
            f"version={self.version}, last_modified={self.last_modified}, refresh_id={self.refresh_id!r})"
        )


@dataclass(frozen=True)
class RefreshOutcome:
    """The acknowledgment: result, the version held afterwards, and why (never a value)."""

    result: Result
    applied_version: int
    message: str = ""


def check_name(name: str, prefixes: Sequence[str]) -> None:
    """Raise InvalidArgument unless `name` is non-empty and under one of `prefixes`."""
    if not name:
        raise InvalidArgument("parameter_name", "must not be empty")
    if not any(name.startswith(prefix) for prefix in prefixes):
        raise InvalidArgument(
            "parameter_name", f"{name!r} is outside this instance's prefixes {', '.join(prefixes)}"
        )


class Refresher:
    """Turns changes into cache swaps; safe to call concurrently from one event loop."""

    def __init__(self, *, cache: ConfigCache, store: ParameterStore | None, prefixes: Sequence[str]) -> None:
        self._cache = cache
        self._store = store
        self._prefixes = tuple(prefixes)
        self._reads: SingleFlight[Entry | None] = SingleFlight()

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The prefixes this instance accepts changes for."""
        return self._prefixes

    async def refresh(self, change: Change) -> RefreshOutcome:
        """Apply `change`; raises InvalidArgument for a change this instance must refuse."""
        check_name(change.name, self._prefixes)
        if change.operation is Operation.DELETE:
            candidate = Entry(
                name=change.name,
                value="",
                value_type=change.value_type,
                version=change.version,
                last_modified=change.last_modified or utcnow(),
                loaded_at=utcnow(),
                deleted=True,
            )
        elif change.mode is PayloadMode.VALUE:
            candidate = Entry(
                name=change.name,
                value=change.value,
                value_type=change.value_type,
                version=change.version,
                last_modified=change.last_modified,
                loaded_at=utcnow(),
            )
        else:
            read = await self._read_at_least(change.name, change.version)
            if read is None:
                return self._reject(change, "the parameter does not exist in Parameter Store")
            if read.version < change.version:
                return self._reject(
                    change, f"Parameter Store returned version {read.version}, older than requested"
                )
            candidate = read
        applied = self._cache.apply(candidate)
        if applied.outcome is Outcome.APPLIED:
            outcome = RefreshOutcome(Result.APPLIED, applied.held.version)
        else:
            outcome = RefreshOutcome(
                Result.STALE,
                applied.held.version,
                f"holds version {applied.held.version} (last modified {_iso(applied.held.last_modified)}"
                f"{', deleted' if applied.held.deleted else ''}), not older than the change",
            )
        log.info(
            "refresh",
            extra={
                "refresh_id": change.refresh_id,
                "parameter": change.name,
                "operation": change.operation.value,
                "mode": change.mode.value,
                "version": change.version,
                "result": outcome.result.value,
                "held_version": outcome.applied_version,
            },
        )
        return outcome

    async def _read_at_least(self, name: str, version: int) -> Entry | None:
        if self._store is None:
            raise InvalidArgument(
                "payload_mode", "INVALIDATE needs a Parameter Store reader on this instance"
            )
        store = self._store
        joined = self._reads.in_flight(name)
        read = await self._reads.do(name, lambda: store.get_parameter(name))
        if joined and (read is None or read.version < version):
            # The flight we joined may have started before this version was written: read once more.
            read = await self._reads.do(name, lambda: store.get_parameter(name))
        return read

    def _reject(self, change: Change, why: str) -> RefreshOutcome:
        held = self._cache.snapshot.raw(change.name)
        outcome = RefreshOutcome(Result.REJECTED, held.version if held else 0, why)
        log.warning(
            "refresh rejected",
            extra={
                "refresh_id": change.refresh_id,
                "parameter": change.name,
                "version": change.version,
                "result": outcome.result.value,
                "reason": why,
            },
        )
        return outcome


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else "unknown"
