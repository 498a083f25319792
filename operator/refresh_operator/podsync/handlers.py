"""kopf registration of podSync: importing this module is what wires podSync into an operator.

The operator's entry point imports it next to the core handlers; tests run it alone with
``kopf run --standalone -n NS -m refresh_operator.podsync.handlers``. Every handler id starts with
``podsync-`` so none collides with the core's handlers on the same ConfigRoute objects, and the handlers
keep no state in annotations (event handlers and a timer only). The timer makes kopf put its finalizer on
routes with podSync, so it can stop the timer before the route goes.

Handlers are thin: they hand the object to ``PodSyncController`` (kept in kopf's ``memo.podsync``), which
never raises; failures end up on the route's ``CloudMapSynced`` condition and as Warning Events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from refresh_operator.podsync.cloudmap import CloudMap
from refresh_operator.podsync.controller import PodSyncController
from refresh_operator.podsync.kube import GROUP, PLURAL, VERSION, KubeClient
from refresh_operator.settings import load_settings

SETTINGS = load_settings()


def _post_warning(body: Mapping[str, Any], reason: str, message: str) -> None:
    target: Any = body  # a kopf.Body from the ConfigRoute handlers
    kopf.warn(target, reason=reason, message=message)


def _controller(memo: Any) -> PodSyncController:
    controller = getattr(memo, "podsync", None)
    if not isinstance(controller, PodSyncController):
        raise kopf.PermanentError("podSync is not started (podsync-startup did not run)")
    return controller


def _has_pod_sync(spec: Mapping[str, Any], **_: Any) -> bool:
    return bool(spec.get("podSync"))


@kopf.on.startup(id="podsync-startup")
async def podsync_startup(memo: kopf.Memo, **_: Any) -> None:
    kube = await KubeClient.connect()
    memo.podsync_kube = kube
    memo.podsync = PodSyncController(
        settings=SETTINGS,
        cloudmap=CloudMap.from_settings(SETTINGS),
        kube=kube,
        events=_post_warning,
    )


@kopf.on.cleanup(id="podsync-cleanup")
async def podsync_cleanup(memo: kopf.Memo, **_: Any) -> None:
    kube = getattr(memo, "podsync_kube", None)
    if isinstance(kube, KubeClient):
        await kube.close()


@kopf.on.event(GROUP, VERSION, PLURAL, id="podsync-route-index")
async def podsync_route_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    # async on purpose: kopf runs sync handlers in a thread, and the controller schedules tasks on the loop.
    _controller(memo).route_event(event.get("type"), body)


def _concerns_pod_sync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> bool:
    # Filters before kopf invokes (and logs) the handler: pods no podSync route selects cost nothing.
    controller = getattr(memo, "podsync", None)
    return not isinstance(controller, PodSyncController) or controller.concerns(body)


@kopf.on.event("", "v1", "pods", id="podsync-pods", when=_concerns_pod_sync)
async def podsync_pod_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _controller(memo).pod_event(event.get("type"), body)


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    id="podsync-reconcile",
    interval=SETTINGS.podsync_interval_seconds,
    when=_has_pod_sync,
)
async def podsync_reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller = _controller(memo)
    controller.route_event("MODIFIED", body)
    await controller.reconcile((str(body.metadata.namespace), str(body.metadata.name)))
