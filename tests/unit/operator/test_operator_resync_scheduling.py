"""Resync scheduling with many routes: passes fall due together, at most a bounded number run at once.

1,000 routes seen at start-up fall due in the same tick; running all their passes at once held every
listing and GetState answer in memory together (RSS +100 MiB in a local run). The rest wait, still due.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from typing import Any

from prometheus_client import REGISTRY

from refresh_operator.aws import AwsClients, Blocking
from refresh_operator.context import OperatorContext
from refresh_operator.kube import Kube
from refresh_operator.leadership import Leadership, Peering
from refresh_operator.resync import PassReport, Resync
from refresh_operator.routes import Route, RouteIndex, route_from_object
from refresh_operator.settings import load_settings
from refresh_operator.values import ValueCache

ROUTES = 20
LIMIT = 3


def make_route(index: int) -> Route:
    return route_from_object(
        {
            "metadata": {"namespace": "team-a", "name": f"r{index}", "uid": f"u{index}"},
            "spec": {
                "parameterPrefix": f"/config-service/t{index}/",
                "discovery": {"cloudMap": {"namespace": "ns", "service": "svc"}},
                "resync": {"intervalSeconds": 1},
            },
        }
    )


class CountingResync(Resync):
    """Resync whose passes only record how many run at once and wait to be released."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.active = 0
        self.most = 0
        self.passed: set[str] = set()
        self.release = asyncio.Event()

    async def pass_once(self, route: Route) -> PassReport:
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            await self.release.wait()
        finally:
            self.active -= 1
        self.passed.add(route.name)
        return PassReport()

    async def _record(self, route: Route, fields: Any) -> None:
        return None


async def wait_until(what: str, probe: Any) -> None:
    deadline = asyncio.get_running_loop().time() + 30.0
    while not probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_many_due_routes_run_a_bounded_number_of_passes_and_every_route_gets_its_turn() -> None:
    settings = load_settings(
        {"CONFIG_REFRESH_QUEUE_URL": "http://127.0.0.1:1/queue", "AWS_REGION": "us-east-1"}
    )
    index = RouteIndex()
    for number in range(ROUTES):
        index.upsert(make_route(number))
    blocking = Blocking(threads=2)
    resync = CountingResync(
        context=OperatorContext(
            settings=settings,
            clients=AwsClients(sqs=None, ssm=None, servicediscovery=None),
            blocking=blocking,
            kube=Kube(),
            routes=index,
            values=ValueCache(),
        ),
        max_concurrent_passes=LIMIT,
    )
    stop = asyncio.Event()
    loop_task = asyncio.create_task(resync.run(stop))
    try:
        await wait_until(f"{LIMIT} passes running", lambda: resync.active == LIMIT)
        await asyncio.sleep(1.5)  # several ticks with every other route due
        assert resync.active == LIMIT
        resync.release.set()
        await wait_until("every route passed once", lambda: len(resync.passed) == ROUTES)
        assert resync.most == LIMIT
    finally:
        stop.set()
        resync.release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(loop_task, timeout=10)
        blocking.shutdown()


def skipped(loop: str) -> float:
    return REGISTRY.get_sample_value("config_refresh_background_passes_skipped_total", {"loop": loop}) or 0.0


async def test_a_standby_replica_skips_its_due_passes_and_runs_them_once_it_is_active() -> None:
    settings = load_settings(
        {"CONFIG_REFRESH_QUEUE_URL": "http://127.0.0.1:1/queue", "AWS_REGION": "us-east-1"}
    )
    index = RouteIndex()
    for number in range(2):
        index.upsert(make_route(number))
    active = False
    reads = 0

    async def read(_: Peering) -> dict[str, Any]:
        nonlocal reads
        reads += 1
        now = datetime.datetime.now(datetime.UTC).isoformat()
        peers = {"me": {"priority": 5, "lifetime": 60, "lastseen": now}}
        if not active:
            peers["other"] = {"priority": 9, "lifetime": 60, "lastseen": now}
        return {"status": peers}

    blocking = Blocking(threads=2)
    resync = CountingResync(
        context=OperatorContext(
            settings=settings,
            clients=AwsClients(sqs=None, ssm=None, servicediscovery=None),
            blocking=blocking,
            kube=Kube(),
            routes=index,
            values=ValueCache(),
        ),
        leadership=Leadership(Peering(name="op", priority=5, namespace="team-a"), read_peering=read),
    )
    resync.release.set()
    before = skipped("resync")
    stop = asyncio.Event()
    loop_task = asyncio.create_task(resync.run(stop))
    try:
        await wait_until("two rounds of skipped passes", lambda: skipped("resync") >= before + 4)
        assert resync.passed == set(), "a standby replica reads nothing from Parameter Store"
        assert reads <= skipped("resync") - before, "the peering is read once per tick with due passes"
        active = True
        await wait_until("both routes passed", lambda: len(resync.passed) == 2)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(loop_task, timeout=10)
        blocking.shutdown()
