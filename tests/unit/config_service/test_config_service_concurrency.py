"""Readers hammering GetConfig while refreshes swap the snapshot: no failure, always a consistent entry."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import grpc

from config_service.cache import ConfigCache, Entry, ValueType
from config_service.lifecycle import Lifecycle, Phase
from configrefresh.v1 import config_service_pb2 as cpb
from configrefresh.v1 import refresh_service_pb2 as rpb
from tests.unit.fakes.service import PREFIX, serving

NAMES = [f"{PREFIX}acme/key{i}" for i in range(5)]
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
REFRESHES = 300
READERS = 6


async def test_readers_never_fail_and_always_see_a_consistent_entry_while_refreshes_swap() -> None:
    # Filler entries make every swap copy a realistic snapshot.
    filler = (Entry(f"{PREFIX}filler/{i}", "x", ValueType.STRING, 1, T0, T0) for i in range(2000))
    cache = ConfigCache([*filler, *(Entry(name, "value-1", ValueType.STRING, 1, T0, T0) for name in NAMES)])
    lifecycle = Lifecycle()
    await lifecycle.set(Phase.SERVING)
    writing_done = asyncio.Event()
    problems: list[str] = []
    reads = 0
    slowest = 0.0

    async def write() -> None:
        try:
            for version in range(2, REFRESHES + 2):
                request = rpb.RefreshRequest(
                    parameter_name=NAMES[version % len(NAMES)],
                    version=version,
                    operation=rpb.OPERATION_UPSERT,
                    value=f"value-{version}",
                )
                request.last_modified.FromDatetime(T0 + timedelta(seconds=version))
                answer = await refresh.Refresh(request, timeout=30)
                if answer.result != rpb.REFRESH_RESULT_APPLIED:
                    problems.append(f"refresh v{version}: {answer.result}")
        finally:
            writing_done.set()

    async def read(reader: int) -> None:
        nonlocal reads, slowest
        last_seen = dict.fromkeys(NAMES, 0)
        index = reader
        while not writing_done.is_set():
            name = NAMES[index % len(NAMES)]
            index += 1
            started = time.perf_counter()
            try:
                answer = await config.GetConfig(cpb.GetConfigRequest(name=name), timeout=30)
            except grpc.aio.AioRpcError as error:
                problems.append(f"reader {reader}: {error.code()}")
                continue
            slowest = max(slowest, time.perf_counter() - started)
            reads += 1
            entry = answer.entry
            if entry.value != f"value-{entry.version}":
                problems.append(f"inconsistent entry: version {entry.version} with value {entry.value!r}")
            if entry.version < last_seen[name]:
                problems.append(f"{name} went back from {last_seen[name]} to {entry.version}")
            last_seen[name] = entry.version

    async with serving(cache, lifecycle) as served:
        config, refresh = served.config, served.refresh
        await asyncio.wait_for(asyncio.gather(write(), *(read(i) for i in range(READERS))), timeout=240)
    print(f"{reads} reads during {REFRESHES} refreshes; slowest read {slowest * 1000:.1f} ms")
    assert problems == []
    assert reads >= READERS
    for name in NAMES:
        held = cache.get(name)
        assert held is not None
        assert held.value == f"value-{held.version}"
