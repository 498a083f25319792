"""Deleting finished ConfigRefresh objects so etcd does not grow with every change ever made.

A finished rollout (Succeeded, PartiallyFailed, Failed, Superseded) is deleted when it completed more
than `retention_seconds` ago (0 disables the age rule), or when it is not among the newest
`retention_keep` finished rollouts of its route and parameter. Running rollouts are never touched.
Defaults: 7 days, newest 10 per parameter, checked every 5 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from configrefresh_api.groupversion import REFRESHES
from configrefresh_api.labels import ANNOTATION_PARAMETER_NAME
from configrefresh_api.phases import TERMINAL_PHASES
from configrefresh_api.times import parse_time
from refresh_operator import metrics
from refresh_operator.aws import Blocking
from refresh_operator.kube import Kube, KubeError
from refresh_operator.leadership import Leadership

logger = logging.getLogger("refresh_operator.retention")
DELETES_AT_ONCE = 4


def _finished_at(obj: Mapping[str, Any]) -> datetime.datetime:
    status = obj.get("status") or {}
    metadata = obj.get("metadata") or {}
    text = status.get("completedAt") or metadata.get("creationTimestamp")
    return parse_time(str(text)) if text else datetime.datetime.fromtimestamp(0, tz=datetime.UTC)


def expired(
    objects: Sequence[Mapping[str, Any]],
    *,
    now: datetime.datetime,
    max_age_seconds: int,
    keep: int,
) -> list[tuple[str, str]]:
    """(namespace, name) of the finished objects to delete under the two rules. Pure."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for obj in objects:
        if (obj.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            continue
        metadata = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        parameter = (metadata.get("annotations") or {}).get(ANNOTATION_PARAMETER_NAME) or (
            spec.get("parameter") or {}
        ).get("name", "")
        groups[(str(metadata.get("namespace")), str(spec.get("route")), str(parameter))].append(obj)
    doomed: list[tuple[str, str]] = []
    for members in groups.values():
        members.sort(key=_finished_at, reverse=True)
        for index, obj in enumerate(members):
            too_old = max_age_seconds > 0 and (now - _finished_at(obj)).total_seconds() > max_age_seconds
            if index >= keep or too_old:
                metadata = obj.get("metadata") or {}
                doomed.append((str(metadata.get("namespace")), str(metadata.get("name"))))
    return sorted(doomed)


async def sweep(
    *, kube_api: Kube, blocking: Blocking, namespaces: Sequence[str] | None, max_age_seconds: int, keep: int
) -> int:
    objects: list[dict[str, Any]] = []
    for namespace in namespaces if namespaces is not None else [None]:
        objects.extend(await blocking.call(kube_api.list, REFRESHES, namespace))
    doomed = expired(
        objects, now=datetime.datetime.now(datetime.UTC), max_age_seconds=max_age_seconds, keep=keep
    )
    # A few at a time: one by one, 102 deletions took over a minute on an API server under a 50 changes/s
    # load test, longer than the interval; all at once would take every thread of the shared pool.
    gate = asyncio.Semaphore(DELETES_AT_ONCE)

    async def delete(namespace: str, name: str) -> None:
        async with gate:
            await blocking.call(kube_api.delete, REFRESHES, namespace, name)

    outcomes = await asyncio.gather(
        *(delete(namespace, name) for namespace, name in doomed), return_exceptions=True
    )
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if failures:
        raise failures[0]
    if doomed:
        logger.info("Retention deleted %d finished ConfigRefresh object(s)", len(doomed))
    return len(doomed)


async def run(
    *,
    kube_api: Kube,
    blocking: Blocking,
    namespaces: Sequence[str] | None,
    max_age_seconds: int,
    keep: int,
    interval: float,
    stop: asyncio.Event,
    leadership: Leadership | None = None,
) -> None:
    """Sweep every `interval` seconds; a standby replica of a kopf peering skips the sweep (counted)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
        if leadership is not None and not await leadership.is_active():
            metrics.BACKGROUND_PASSES_SKIPPED.labels("retention").inc()
            continue
        try:
            await sweep(
                kube_api=kube_api,
                blocking=blocking,
                namespaces=namespaces,
                max_age_seconds=max_age_seconds,
                keep=keep,
            )
        except KubeError as error:
            logger.warning("Retention sweep failed: %s", error)
