"""kopf registration of podSync: ``register`` adds its handlers to a registry, nothing happens at import.

The operator's composition root (``refresh_operator.cli``) calls ``register`` beside the core's own
``handlers.register``, handing over the operator's one Kubernetes client and its blocking thread pool;
``refresh_operator.podsync.standalone`` runs podSync on its own (``kopf run --standalone -n NS -m
refresh_operator.podsync.standalone``). Every handler id starts with ``podsync-`` so none collides with
the core's handlers on the same ConfigRoute objects, and the handlers keep no state in annotations (event
handlers and a timer only). The timer makes kopf put its finalizer on routes with podSync, so it can stop
the timer before the route goes.

Handlers are thin: they hand the object to the ``PodSyncController`` built at start-up, which never
raises; failures end up on the route's ``CloudMapSynced`` condition and as Warning Events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from configrefresh_api.groupversion import GROUP, VERSION
from configrefresh_api.groupversion import ROUTES as PLURAL
from refresh_operator import kube
from refresh_operator.cloudmap import Registrar, make_client
from refresh_operator.podsync.controller import PodSyncController
from refresh_operator.podsync.kube import KubeClient, Runner
from refresh_operator.settings import OperatorSettings


def _post_warning(body: Mapping[str, Any], reason: str, message: str) -> None:
    target: Any = body  # a kopf.Body from the ConfigRoute handlers
    kopf.warn(target, reason=reason, message=message)


def _has_pod_sync(spec: Mapping[str, Any], **_: Any) -> bool:
    return bool(spec.get("podSync"))


def register(
    registry: kopf.OperatorRegistry, settings: OperatorSettings, *, kube_api: kube.Kube, run: Runner
) -> None:
    """Add podSync's handlers to ``registry``. ``kube_api`` is the operator's Kubernetes client and ``run``
    puts a blocking call on its thread pool (``Blocking.call``; ``asyncio.to_thread`` when alone)."""
    started: list[PodSyncController] = []

    def controller() -> PodSyncController:
        if not started:
            raise kopf.PermanentError("podSync is not started (podsync-startup did not run)")
        return started[0]

    @kopf.on.startup(registry=registry, id="podsync-startup")
    async def podsync_startup(**_: Any) -> None:
        client = await run(make_client, region=settings.region, endpoint_url=settings.aws_endpoint_url)
        started[:] = [
            PodSyncController(
                settings=settings,
                cloudmap=Registrar(
                    client,
                    region=settings.region,
                ),
                kube=KubeClient(kube_api, run),
                events=_post_warning,
            )
        ]

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="podsync-route-index")
    async def podsync_route_event(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
        # async on purpose: kopf runs sync handlers in a thread; the controller schedules tasks on the loop.
        controller().route_event(event.get("type"), body)

    def concerns_pod_sync(body: kopf.Body, **_: Any) -> bool:
        # Filters before kopf invokes (and logs) the handler: pods no podSync route selects cost nothing.
        return not started or started[0].concerns(body)

    @kopf.on.event("", "v1", "pods", registry=registry, id="podsync-pods", when=concerns_pod_sync)
    async def podsync_pod_event(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
        await controller().pod_event(event.get("type"), body)

    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id="podsync-reconcile",
        interval=settings.podsync_interval_seconds,
        when=_has_pod_sync,
    )
    async def podsync_reconcile(body: kopf.Body, **_: Any) -> None:
        sync = controller()
        sync.route_event("MODIFIED", body)
        await sync.reconcile((str(body.metadata.namespace), str(body.metadata.name)))
