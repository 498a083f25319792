"""Refresh rules without a server: validation, VALUE and INVALIDATE modes, single-flight re-reads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from config_service.cache import ConfigCache, Entry, ValueType
from config_service.errors import InvalidArgument
from config_service.refresh_servicer import change_from_request
from config_service.refresher import Change, Operation, PayloadMode, Refresher, Result
from configrefresh.v1 import refresh_service_pb2 as pb
from tests.unit.fakes.parameter_store import FakeStore

PREFIX = "/config-service/"
NAME = "/config-service/acme/orders/db_url"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def stored(version: int, minutes: int = 0) -> Entry:
    return Entry(NAME, f"value-{version}", ValueType.STRING, version, T0 + timedelta(minutes=minutes), T0)


def change(
    version: int, *, mode: PayloadMode = PayloadMode.VALUE, op: Operation = Operation.UPSERT
) -> Change:
    return Change(
        name=NAME,
        operation=op,
        mode=mode,
        version=version,
        last_modified=T0 + timedelta(minutes=version),
        value=f"value-{version}" if mode is PayloadMode.VALUE else "",
    )


def stamp(moment: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(moment)
    return result


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        (
            {"parameter_name": "", "version": 1, "operation": pb.OPERATION_UPSERT, "value": "x"},
            "parameter_name",
        ),
        ({"parameter_name": NAME, "version": 0, "operation": pb.OPERATION_UPSERT, "value": "x"}, "version"),
        ({"parameter_name": NAME, "version": 1, "operation": pb.OPERATION_UPSERT}, "value"),
        ({"parameter_name": NAME, "version": 1, "value": "x"}, "operation"),
        ({"parameter_name": NAME, "version": -1, "operation": pb.OPERATION_DELETE}, "version"),
    ],
)
def test_a_bad_request_is_refused_naming_the_field(request_fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        change_from_request(pb.RefreshRequest(**request_fields))
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}:")


def test_a_request_carries_its_modification_time_and_type() -> None:
    parsed = change_from_request(
        pb.RefreshRequest(
            parameter_name=NAME,
            version=3,
            operation=pb.OPERATION_UPSERT,
            value="s3cret-value",
            value_type=pb.VALUE_TYPE_SECURE_STRING,
            last_modified=stamp(T0),
        )
    )
    assert parsed.mode is PayloadMode.VALUE
    assert parsed.last_modified == T0
    assert parsed.value_type is ValueType.SECURE_STRING
    assert parsed.value == "s3cret-value"
    assert "s3cret-value" not in repr(parsed)


def test_an_invalidate_upsert_needs_no_value() -> None:
    parsed = change_from_request(
        pb.RefreshRequest(
            parameter_name=NAME,
            version=2,
            operation=pb.OPERATION_UPSERT,
            payload_mode=pb.PAYLOAD_MODE_INVALIDATE,
        )
    )
    assert parsed.mode is PayloadMode.INVALIDATE


async def test_a_name_outside_the_prefixes_is_refused() -> None:
    refresher = Refresher(cache=ConfigCache(), store=None, prefixes=["/other/"])
    with pytest.raises(InvalidArgument) as raised:
        await refresher.refresh(change(1))
    assert raised.value.field == "parameter_name"


async def test_value_mode_applies_then_answers_stale_for_the_same_version() -> None:
    cache = ConfigCache()
    refresher = Refresher(cache=cache, store=None, prefixes=[PREFIX])
    first = await refresher.refresh(change(2))
    again = await refresher.refresh(change(2))
    older = await refresher.refresh(change(1))
    assert (first.result, first.applied_version) == (Result.APPLIED, 2)
    assert (again.result, again.applied_version) == (Result.STALE, 2)
    assert (older.result, older.applied_version) == (Result.STALE, 2)
    held = cache.get(NAME)
    assert held is not None
    assert held.value == "value-2"


async def test_a_delete_tombstones_and_a_late_upsert_stays_stale() -> None:
    cache = ConfigCache()
    refresher = Refresher(cache=cache, store=None, prefixes=[PREFIX])
    await refresher.refresh(change(2))
    deleted = await refresher.refresh(change(3, op=Operation.DELETE))
    late = await refresher.refresh(change(2))
    assert deleted.result is Result.APPLIED
    assert late.result is Result.STALE
    assert cache.get(NAME) is None


async def test_invalidate_reads_once_for_refreshes_that_arrive_together() -> None:
    store = FakeStore({NAME: stored(5, 5)})
    store.release.clear()
    cache = ConfigCache()
    refresher = Refresher(cache=cache, store=store, prefixes=[PREFIX])  # type: ignore[arg-type]
    calls = [
        asyncio.create_task(refresher.refresh(change(5, mode=PayloadMode.INVALIDATE))) for _ in range(20)
    ]
    await asyncio.sleep(0.05)
    store.release.set()
    outcomes = await asyncio.gather(*calls)
    assert store.reads == 1
    assert sorted(outcome.result.value for outcome in outcomes) == ["applied"] + ["stale"] * 19
    held = cache.get(NAME)
    assert held is not None
    assert held.version == 5


async def test_invalidate_rejects_a_read_older_than_requested() -> None:
    store = FakeStore({NAME: stored(4, 4)})
    refresher = Refresher(cache=ConfigCache(), store=store, prefixes=[PREFIX])  # type: ignore[arg-type]
    outcome = await refresher.refresh(change(5, mode=PayloadMode.INVALIDATE))
    assert outcome.result is Result.REJECTED
    assert "version 4" in outcome.message


async def test_invalidate_of_a_missing_parameter_is_rejected() -> None:
    refresher = Refresher(cache=ConfigCache(), store=FakeStore(), prefixes=[PREFIX])  # type: ignore[arg-type]
    outcome = await refresher.refresh(change(1, mode=PayloadMode.INVALIDATE))
    assert outcome.result is Result.REJECTED


async def test_a_joined_read_that_is_too_old_is_followed_by_one_fresh_read() -> None:
    store = FakeStore({NAME: stored(4, 4)})
    store.release.clear()
    refresher = Refresher(cache=ConfigCache(), store=store, prefixes=[PREFIX])  # type: ignore[arg-type]
    early = asyncio.create_task(refresher.refresh(change(4, mode=PayloadMode.INVALIDATE)))
    await asyncio.sleep(0.01)
    late = asyncio.create_task(refresher.refresh(change(5, mode=PayloadMode.INVALIDATE)))
    await asyncio.sleep(0.01)
    store.entries[NAME] = stored(5, 5)  # version 5 is written while the first read is in flight
    store.release.set()
    first, second = await asyncio.gather(early, late)
    assert store.reads == 2
    assert second.result is Result.APPLIED
    assert second.applied_version == 5
    assert first.result in (Result.APPLIED, Result.STALE)
