"""The ConfigRoutes the webhook answers from: current on every replica, whatever kopf peering pauses.

With `replicaCount > 1` every replica serves the webhook (its Service selects them all, and they share the
chart's serving certificate), but kopf peering pauses a standby replica's watches, and with them its
indexes: a kopf index on a standby holds the routes of the moment it was paused (none, if it started as
standby). So the webhook keeps its own copy: one list, then a watch of the changes after it, per watched
namespace (or cluster-wide), each on a thread of its own (the Kubernetes client is blocking; a watch holds
its thread for up to `watch_seconds`). A startup handler starts it, which kopf runs on every replica,
paused or not, and waits for the first lists, so the webhook never answers from an empty copy. An
admission request is answered from memory: no API call inside the API server's webhook timeout.

A watch that ends (its timeout, a dropped connection) resumes from the last version seen; one the server
ends with 410 Gone (the version is compacted away) lists again. Errors are logged and retried with a
doubling delay up to 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from configrefresh_api.groupversion import ROUTES
from refresh_operator.backoff import doubling
from refresh_operator.kube import KubeError

logger = logging.getLogger("refresh_operator.injection")

WATCH_SECONDS = 300
"""How long one watch request lasts before it is renewed from the last version seen."""


class RouteSource(Protocol):
    """The two calls of `refresh_operator.kube.Kube` this copy is made from."""

    def list_at(self, plural: str, namespace: str | None) -> tuple[list[dict[str, Any]], str]: ...

    def watch(
        self, plural: str, namespace: str | None, *, resource_version: str, timeout_seconds: int
    ) -> Iterable[tuple[str, dict[str, Any]]]: ...


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _entry(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the patch builder reads of a route: its namespace, name and spec."""
    namespace, name = _key(obj)
    return {"metadata": {"namespace": namespace, "name": name}, "spec": dict(obj.get("spec") or {})}


class WatchedRoutes:
    """ConfigRoutes by (namespace, name), kept current by list and watch threads (`start`, `stop`)."""

    def __init__(
        self,
        source: RouteSource,
        namespaces: Sequence[str] | None,
        *,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        """`namespaces`: the namespaces the operator watches; None for cluster-wide."""
        self._source = source
        self._scopes: list[str | None] = list(namespaces) if namespaces is not None else [None]
        self._watch_seconds = watch_seconds
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], dict[str, Any]] = {}
        self._listed: set[str | None] = set()
        self._all_listed = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._routes.get((namespace, name))

    def __len__(self) -> int:
        with self._lock:
            return len(self._routes)

    @property
    def ready(self) -> bool:
        """Every scope has been listed once."""
        return self._all_listed.is_set()

    async def wait_ready(self) -> None:
        """Until every scope has been listed once (a list that fails is retried meanwhile)."""
        while not await asyncio.to_thread(self._all_listed.wait, 1.0):
            pass

    def start(self) -> None:
        for scope in self._scopes:
            thread = threading.Thread(
                target=self._run, args=(scope,), name=f"injection-routes-{scope or 'all'}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Ask the threads to end; a thread inside a watch ends when it returns (daemon threads: they never
        hold up the process)."""
        self._stopping.set()

    def _run(self, scope: str | None) -> None:
        delays = doubling(0.5, max_seconds=10)
        version: str | None = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    items, version = self._source.list_at(ROUTES, scope)
                    self._replace(scope, items)
                    delays = doubling(0.5, max_seconds=10)
                version = self._follow(scope, version)
            except KubeError as error:
                if error.status == 410:
                    logger.info("The watch of ConfigRoutes for injection expired; listing again")
                    version = None
                    continue
                logger.warning("Watching ConfigRoutes for injection failed (%s); retrying", error)
                version = None
                self._stopping.wait(next(delays))

    def _follow(self, scope: str | None, version: str) -> str:
        """Apply one watch request's events; the last version seen, where the next one resumes."""
        events = self._source.watch(
            ROUTES, scope, resource_version=version, timeout_seconds=self._watch_seconds
        )
        for kind, obj in events:
            key = _key(obj)
            with self._lock:
                if kind == "DELETED":
                    self._routes.pop(key, None)
                else:
                    self._routes[key] = _entry(obj)
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if self._stopping.is_set():
                break
        return version

    def _replace(self, scope: str | None, items: Iterable[Mapping[str, Any]]) -> None:
        fresh = {_key(obj): _entry(obj) for obj in items}
        with self._lock:
            for key in [key for key in self._routes if scope is None or key[0] == scope]:
                del self._routes[key]
            self._routes.update(fresh)
            first = scope not in self._listed
            self._listed.add(scope)
            if len(self._listed) == len(self._scopes):
                self._all_listed.set()
        if first:
            logger.info("Injection indexed %d ConfigRoute(s) in %s", len(fresh), scope or "every namespace")
