"""ConfigService and RefreshService over a real in-process gRPC server (no AWS): codes and paging."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime

import grpc
import pytest

from config_service.cache import ConfigCache, Entry, ValueType
from config_service.lifecycle import Lifecycle, Phase
from configrefresh.v1 import config_service_pb2 as cpb
from configrefresh.v1 import refresh_service_pb2 as rpb
from tests.unit.fakes.service import PREFIX, Served, serving

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
async def running() -> AsyncIterator[Served]:
    cache = ConfigCache(
        Entry(f"{PREFIX}acme/p{i:03d}", f"v{i}", ValueType.STRING, 1, T0, T0) for i in range(250)
    )
    async with serving(cache, Lifecycle()) as served:
        yield served


async def code_of(call: Awaitable[object]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code()


async def test_everything_is_unavailable_until_the_bootstrap_completes(running: Served) -> None:
    name = f"{PREFIX}acme/p001"
    assert (
        await code_of(running.config.GetConfig(cpb.GetConfigRequest(name=name)))
        is grpc.StatusCode.UNAVAILABLE
    )
    assert await code_of(running.config.ListConfig(cpb.ListConfigRequest())) is grpc.StatusCode.UNAVAILABLE
    refresh = rpb.RefreshRequest(parameter_name=name, version=2, operation=rpb.OPERATION_UPSERT, value="x")
    assert await code_of(running.refresh.Refresh(refresh)) is grpc.StatusCode.UNAVAILABLE
    await running.required_lifecycle.set(Phase.SERVING)
    answer = await running.config.GetConfig(cpb.GetConfigRequest(name=name))
    assert answer.entry.value == "v1"


async def test_getconfig_codes(running: Served) -> None:
    await running.required_lifecycle.set(Phase.SERVING)
    missing = running.config.GetConfig(cpb.GetConfigRequest(name=f"{PREFIX}nope"))
    assert await code_of(missing) is grpc.StatusCode.NOT_FOUND
    assert await code_of(running.config.GetConfig(cpb.GetConfigRequest())) is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_deleted_parameter_is_not_found_and_not_listed(running: Served) -> None:
    await running.required_lifecycle.set(Phase.SERVING)
    name = f"{PREFIX}acme/p000"
    answer = await running.refresh.Refresh(
        rpb.RefreshRequest(parameter_name=name, version=1, operation=rpb.OPERATION_DELETE)
    )
    assert answer.result == rpb.REFRESH_RESULT_APPLIED
    assert (
        await code_of(running.config.GetConfig(cpb.GetConfigRequest(name=name))) is grpc.StatusCode.NOT_FOUND
    )
    listed = await running.config.ListConfig(cpb.ListConfigRequest(prefix=f"{PREFIX}acme/", page_size=3))
    assert [entry.name for entry in listed.entries] == [
        f"{PREFIX}acme/p001",
        f"{PREFIX}acme/p002",
        f"{PREFIX}acme/p003",
    ]
    state = await running.refresh.GetState(rpb.GetStateRequest(name_prefix=name))
    assert [(p.name, p.deleted) for p in state.parameters] == [(name, True)]


async def test_listconfig_pages_through_everything_in_order(running: Served) -> None:
    await running.required_lifecycle.set(Phase.SERVING)
    names: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await running.config.ListConfig(
            cpb.ListConfigRequest(prefix=PREFIX, page_size=40, page_token=token)
        )
        names.extend(entry.name for entry in page.entries)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 7
    assert names == sorted(f"{PREFIX}acme/p{i:03d}" for i in range(250))
    default = await running.config.ListConfig(cpb.ListConfigRequest())
    assert len(default.entries) == 100


async def test_listconfig_refuses_foreign_tokens_and_negative_sizes(running: Served) -> None:
    await running.required_lifecycle.set(Phase.SERVING)
    page = await running.config.ListConfig(cpb.ListConfigRequest(prefix=PREFIX, page_size=10))
    other_prefix = cpb.ListConfigRequest(prefix=f"{PREFIX}acme/", page_token=page.next_page_token)
    forged = cpb.ListConfigRequest(prefix=PREFIX, page_token="bm9wZQ.bad")
    negative = cpb.ListConfigRequest(page_size=-1)
    for request in (other_prefix, forged, negative):
        assert await code_of(running.config.ListConfig(request)) is grpc.StatusCode.INVALID_ARGUMENT


async def test_refresh_refuses_bad_requests_naming_the_field(running: Served) -> None:
    await running.required_lifecycle.set(Phase.SERVING)
    request = rpb.RefreshRequest(
        parameter_name="/elsewhere/x", version=1, operation=rpb.OPERATION_UPSERT, value="v"
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.refresh.Refresh(request)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("parameter_name:")


async def test_refresh_answers_with_the_instance_id_and_held_version(running: Served) -> None:
    await running.required_lifecycle.set(Phase.SERVING)
    name = f"{PREFIX}acme/p007"
    newer = rpb.RefreshRequest(parameter_name=name, version=2, operation=rpb.OPERATION_UPSERT, value="v2")
    newer.last_modified.FromDatetime(datetime(2026, 11, 26, 11, 0, tzinfo=UTC))
    applied = await running.refresh.Refresh(newer)
    stale = await running.refresh.Refresh(newer)
    assert (applied.result, applied.applied_version, applied.instance_id) == (
        rpb.REFRESH_RESULT_APPLIED,
        2,
        "unit",
    )
    assert (stale.result, stale.applied_version) == (rpb.REFRESH_RESULT_STALE, 2)
    assert stale.message
    answer = await running.config.GetConfig(cpb.GetConfigRequest(name=name))
    assert (answer.entry.value, answer.entry.version) == ("v2", 2)


async def test_getconfig_answers_the_entry_held_now_after_every_kind_of_swap(running: Served) -> None:
    """GetConfig reuses its answer per entry: a pushed refresh, a delete and a swap made directly on the
    cache (as the TTL re-read and the bootstrap do) are each seen on the very next read."""
    await running.required_lifecycle.set(Phase.SERVING)
    name = f"{PREFIX}acme/p011"
    first = await running.config.GetConfig(cpb.GetConfigRequest(name=name))
    assert (first.entry.value, first.entry.version) == ("v11", 1)
    pushed = rpb.RefreshRequest(parameter_name=name, version=2, operation=rpb.OPERATION_UPSERT, value="v2")
    pushed.last_modified.FromDatetime(datetime(2026, 11, 26, 11, 0, tzinfo=UTC))
    await running.refresh.Refresh(pushed)
    second = await running.config.GetConfig(cpb.GetConfigRequest(name=name))
    assert (second.entry.value, second.entry.version) == ("v2", 2)
    running.cache.apply(Entry(name, "v3", ValueType.STRING, 3, datetime(2026, 11, 26, 12, tzinfo=UTC), T0))
    third = await running.config.GetConfig(cpb.GetConfigRequest(name=name))
    assert (third.entry.value, third.entry.version) == ("v3", 3)
    await running.refresh.Refresh(
        rpb.RefreshRequest(parameter_name=name, version=4, operation=rpb.OPERATION_DELETE)
    )
    assert (
        await code_of(running.config.GetConfig(cpb.GetConfigRequest(name=name))) is grpc.StatusCode.NOT_FOUND
    )


async def test_an_unauthenticated_config_api_withholds_secure_strings() -> None:
    """--insecure-config-api: the explicit opt-out still never hands a SecureString to an anonymous caller."""
    cache = ConfigCache(
        [
            Entry(f"{PREFIX}acme/db/password", "s3cret", ValueType.SECURE_STRING, 1, T0, T0),
            Entry(f"{PREFIX}acme/db/host", "db.internal", ValueType.STRING, 1, T0, T0),
        ]
    )
    async with serving(cache, withhold_secrets=True, refresh=False) as served:
        stub = served.config
        secret = stub.GetConfig(cpb.GetConfigRequest(name=f"{PREFIX}acme/db/password"))
        assert await code_of(secret) is grpc.StatusCode.PERMISSION_DENIED
        listed = await stub.ListConfig(cpb.ListConfigRequest(prefix=PREFIX))
        assert [entry.value for entry in listed.entries] == ["db.internal"]
        plain = await stub.GetConfig(cpb.GetConfigRequest(name=f"{PREFIX}acme/db/host"))
        assert plain.entry.value == "db.internal"
