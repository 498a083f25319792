"""RouteSync: listing the routes again when a message matches none (a standby replica's stale index)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from refresh_operator.route_sync import RouteSync
from refresh_operator.routes import Route, RouteIndex, route_from_object


def route_object(
    name: str, prefix: str, *, uid: str = "u", generation: int = 1, created: str = "2026-12-05T10:00:00Z"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": uid,
            "generation": generation,
            "creationTimestamp": created,
        },
        "spec": {"parameterPrefix": prefix, "discovery": {"cloudMap": {"namespace": "n", "service": "s"}}},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sync_over(index: RouteIndex, objects: list[dict[str, Any]], clock: Clock, calls: list[int]) -> RouteSync:
    async def list_routes() -> Sequence[Mapping[str, Any]]:
        calls.append(1)
        await asyncio.sleep(0)
        return list(objects)

    def admit(obj: Mapping[str, Any]) -> Route:
        return route_from_object(obj)

    return RouteSync(index=index, list_routes=list_routes, admit=admit, min_interval=2.0, clock=clock)


async def test_a_route_created_since_is_indexed_and_reported() -> None:
    index, clock = RouteIndex(), Clock()
    calls: list[int] = []
    objects = [route_object("orders", "/orders/")]
    sync = sync_over(index, objects, clock, calls)
    assert await sync.refresh() is True
    assert [route.name for route, _ in index.match("/orders/db")] == ["orders"]


async def test_a_flood_of_misses_lists_once_per_interval_and_shares_the_result() -> None:
    index, clock = RouteIndex(), Clock()
    calls: list[int] = []
    sync = sync_over(index, [route_object("orders", "/orders/")], clock, calls)
    results = await asyncio.gather(*(sync.refresh() for _ in range(20)))
    assert calls == [1]
    assert all(results), "callers that waited on the list in flight see what it indexed"
    assert await sync.refresh() is False, "within the interval nothing is listed, nothing changed"
    clock.now += 2.5
    assert await sync.refresh() is False
    assert calls == [1, 1]


async def test_an_older_object_from_the_list_never_replaces_a_newer_indexed_one() -> None:
    index, clock = RouteIndex(), Clock()
    calls: list[int] = []
    index.upsert(route_from_object(route_object("orders", "/orders-v2/", generation=3)))
    sync = sync_over(index, [route_object("orders", "/orders/", generation=2)], clock, calls)
    assert await sync.refresh() is False
    assert index.match("/orders-v2/db")
    assert not index.match("/orders/db")


async def test_a_later_generation_or_a_recreated_object_replaces_the_indexed_one() -> None:
    index, clock = RouteIndex(), Clock()
    calls: list[int] = []
    index.upsert(route_from_object(route_object("orders", "/old/", generation=1)))
    sync = sync_over(index, [route_object("orders", "/new/", generation=2)], clock, calls)
    assert await sync.refresh() is True
    assert index.match("/new/db")
    assert not index.match("/old/db")
    recreated = route_object("orders", "/again/", uid="u2", created="2026-12-05T11:00:00Z")
    assert sync.index_all([recreated]) == 1
    assert index.match("/again/db")


async def test_a_failed_list_is_no_change() -> None:
    async def broken() -> Sequence[Mapping[str, Any]]:
        raise ConnectionError("API server down")

    sync = RouteSync(index=RouteIndex(), list_routes=broken, admit=route_from_object)
    assert await sync.refresh() is False


async def test_an_invalid_route_is_skipped_and_the_rest_indexed() -> None:
    index, clock = RouteIndex(), Clock()
    calls: list[int] = []
    objects = [route_object("bad", "/"), route_object("orders", "/orders/")]
    assert sync_over(index, objects, clock, calls).index_all(objects) == 1
    assert len(index) == 1
