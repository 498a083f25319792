"""The Kubernetes calls podSync makes outside kopf's watches: list pods, apply route status.

They go through the operator's one Kubernetes client (``refresh_operator.kube.Kube``: one connection pool,
one login) and run on the operator's blocking thread pool, never on the event loop.

The reconcile lists pods from the API server rather than trusting what the watch has delivered so far,
so an operator that just started never mistakes "not seen yet" for "gone" and deregisters live pods.
Pods are read as plain dicts, the same shape kopf hands to handlers, so ``model`` sees one shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

from configrefresh_api.groupversion import ROUTES
from refresh_operator import kube
from refresh_operator.podsync.model import FIELD_MANAGER

P = ParamSpec("P")
T = TypeVar("T")


class Runner(Protocol):
    """Runs a blocking call off the event loop (``aws.Blocking.call``, or ``asyncio.to_thread``)."""

    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]: ...


class Kube(Protocol):
    """The Kubernetes access podSync's controller needs."""

    async def list_pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[dict[str, Any]]: ...

    async def apply_route_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> None: ...


class KubeClient:
    """``Kube`` over the operator's ``kube.Kube``, each call on ``run``'s threads."""

    def __init__(self, api: kube.Kube, run: Runner) -> None:
        self._api = api
        self._run = run

    async def list_pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
        return await self._run(self._api.list_pods, namespace, label_selector=selector)

    async def apply_route_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        await self._run(self._api.apply_status, ROUTES, namespace, name, body, field_manager=FIELD_MANAGER)
