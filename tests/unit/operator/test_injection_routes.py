"""The webhook's own copy of the ConfigRoutes (injection/routes.py): list, watch, resume, list again on 410.

The source is scripted: each list answers the next listing given, each watch request yields what the test
puts on its queue until the test ends that request (END) or makes it fail (a KubeError).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from refresh_operator.injection.routes import WatchedRoutes
from refresh_operator.kube import KubeError

END = object()


def route(namespace: str, name: str, version: str, prefix: str = "/p/") -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": version},
        "spec": {"parameterPrefix": prefix},
    }


class ScriptedSource:
    def __init__(self, listings: list[tuple[list[dict[str, Any]], str] | KubeError]) -> None:
        self.listings = listings
        self.lists: list[str | None] = []
        self.watches: list[tuple[str | None, str]] = []
        self.events: queue.Queue[object] = queue.Queue()
        self.lock = threading.Lock()

    def list_at(self, plural: str, namespace: str | None) -> tuple[list[dict[str, Any]], str]:
        assert plural == "configroutes"
        with self.lock:
            self.lists.append(namespace)
            answer = self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]
        if isinstance(answer, KubeError):
            raise answer
        return answer

    def watch(
        self, plural: str, namespace: str | None, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        with self.lock:
            self.watches.append((namespace, resource_version))
        while True:
            item = self.events.get()
            if item is END:
                return
            if isinstance(item, KubeError):
                raise item
            assert isinstance(item, tuple)
            yield item


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_the_copy_is_listed_then_follows_the_watch_and_resumes_from_the_last_version() -> None:
    source = ScriptedSource([([route("team-a", "orders", "10")], "12")])
    routes = WatchedRoutes(source, ["team-a"])
    assert not routes.ready
    routes.start()
    try:
        wait_until(lambda: routes.ready, "the first list")
        assert routes.get("team-a", "orders") == {
            "metadata": {"namespace": "team-a", "name": "orders"},
            "spec": {"parameterPrefix": "/p/"},
        }
        wait_until(lambda: source.watches == [("team-a", "12")], "a watch from the list's version")

        source.events.put(("ADDED", route("team-a", "late", "13")))
        source.events.put(("MODIFIED", route("team-a", "orders", "14", prefix="/q/")))
        wait_until(lambda: routes.get("team-a", "late") is not None, "an added route")
        wait_until(
            lambda: (routes.get("team-a", "orders") or {}).get("spec") == {"parameterPrefix": "/q/"},
            "a modified route",
        )
        source.events.put(("DELETED", route("team-a", "late", "15")))
        wait_until(lambda: routes.get("team-a", "late") is None, "a deleted route")

        source.events.put(END)  # the watch's timeout: resume after the last event, without listing
        wait_until(lambda: len(source.watches) == 2, "the next watch")
        assert source.watches[1] == ("team-a", "15")
        assert source.lists == ["team-a"]
    finally:
        routes.stop()
        source.events.put(END)


def test_a_watch_ended_by_410_lists_again_and_drops_what_was_deleted_meanwhile() -> None:
    source = ScriptedSource(
        [
            ([route("a", "one", "1"), route("b", "two", "2")], "2"),
            ([route("b", "two", "2")], "40"),
        ]
    )
    routes = WatchedRoutes(source, None)  # cluster-wide: one list and watch for every namespace
    routes.start()
    try:
        wait_until(lambda: len(routes) == 2, "the first list")
        wait_until(lambda: len(source.watches) == 1, "the first watch")
        source.events.put(KubeError("watch configroutes: HTTP 410 Gone", status=410))
        wait_until(lambda: len(source.watches) == 2, "a watch after the second list")
        assert source.lists == [None, None]
        assert source.watches == [(None, "2"), (None, "40")]
        assert routes.get("a", "one") is None
        assert routes.get("b", "two") is not None
    finally:
        routes.stop()
        source.events.put(END)


def test_a_failing_list_is_retried_and_ready_waits_for_every_namespace() -> None:
    source = ScriptedSource(
        [KubeError("list configroutes: HTTP 503", status=503), ([route("x", "r", "1")], "1")]
    )
    routes = WatchedRoutes(source, ["x"])
    routes.start()
    try:
        wait_until(lambda: routes.ready, "the list after a failure")
        assert source.lists == ["x", "x"]
        assert routes.get("x", "r") is not None
    finally:
        routes.stop()
        source.events.put(END)


def test_ready_needs_every_watched_namespace_listed() -> None:
    source = ScriptedSource([([], "1")])
    routes = WatchedRoutes(source, ["a", "b"])
    routes.start()
    try:
        wait_until(lambda: sorted(source.lists, key=str) == ["a", "b"], "both lists")
        wait_until(lambda: routes.ready, "both namespaces listed")
        assert len(routes) == 0
    finally:
        routes.stop()
        for _ in range(2):
            source.events.put(END)


def test_wait_ready_returns_once_listed() -> None:
    source = ScriptedSource([([route("x", "r", "1")], "1")])
    routes = WatchedRoutes(source, ["x"])
    routes.start()
    try:
        asyncio.run(asyncio.wait_for(routes.wait_ready(), timeout=10))
        assert routes.get("x", "r") is not None
    finally:
        routes.stop()
        source.events.put(END)
