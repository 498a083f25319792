"""Supersession: a newer rollout of the same route and parameter takes over from an older one.

A newer rollout cancels an older one still running (Superseded), and marks an older Halted one
Superseded; an older one starting after a newer one is Superseded at once. A rollout that finds a newer
version already in Parameter Store creates that version's rollout and steps aside. The bookkeeping of
running ones is per process, which matches kopf's peering model of one active operator; Halted ones are
found through the API (they run nowhere).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from configrefresh_api.labels import refresh_selector
from configrefresh_api.phases import HALTED, Trigger
from configrefresh_api.refresh import ConfigRefreshSpec
from configrefresh_api.versions import VersionKey
from refresh_operator import kube, status
from refresh_operator.aws import Blocking
from refresh_operator.kube import Kube, KubeError
from refresh_operator.parameter_store import ParameterSnapshot
from refresh_operator.recorder import Recorder
from refresh_operator.rollouts.model import EventPoster, RetryLater, Subject
from refresh_operator.rollouts.status_writer import StatusWriter
from refresh_operator.routes import Route
from refresh_operator.values import ValueCache

logger = logging.getLogger("refresh_operator.rollouts")

RunKey = tuple[str, str, str]
"""(namespace, route, parameter): rollouts with the same key supersede each other."""


@dataclasses.dataclass
class Running:
    """A rollout running in this process; `cancel` is set when a newer one takes over."""

    key: VersionKey
    name: str
    cancel: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    superseded_by: str | None = None


class Supersession:
    """Which rollouts run, and the Superseded phase for those a newer one replaces."""

    def __init__(
        self, *, writer: StatusWriter, blocking: Blocking, kube_api: Kube, values: ValueCache
    ) -> None:
        self._writer = writer
        self._blocking = blocking
        self._kube = kube_api
        self._recorder = Recorder(kube_api=kube_api, blocking=blocking, values=values)
        self._running: dict[RunKey, Running] = {}

    @contextmanager
    def running(self, run_key: RunKey, key: VersionKey, name: str) -> Iterator[Running | str]:
        """Register a rollout as the one running for `run_key`, cancelling an older one, for the duration
        of the block. Yields its `Running`, or the name of a newer rollout already running (then this one
        is not registered and should be marked Superseded by it)."""
        other = self._running.get(run_key)
        if other is not None and other.name != name:
            if other.key > key:
                yield other.name
                return
            other.superseded_by = name
            other.cancel.set()
        mine = Running(key=key, name=name)
        self._running[run_key] = mine
        try:
            yield mine
        finally:
            if self._running.get(run_key) is mine:
                del self._running[run_key]

    async def mark_superseded(
        self, subject: Subject, by: str, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        message = f"a newer rollout {by} took over"
        await self._writer.finish(
            subject,
            phase=status.SUPERSEDED,
            extra={**(extra or {}), "supersededBy": by},
            conditions=[
                status.condition(
                    "Ready", status=False, reason="Superseded", message=message, generation=subject.generation
                )
            ],
        )
        subject.post_event("Normal", "Superseded", message)

    async def supersede_halted(
        self,
        namespace: str,
        route: Route,
        parameter_name: str,
        key: VersionKey,
        successor: str,
        post_event: EventPoster,
    ) -> None:
        """Older Halted rollouts of this parameter are Superseded by this one.

        A Halted rollout waits for a person; once a newer version is rolling out, resuming it could only
        push a value the instances have replaced (they would answer Stale), and leaving it Halted would
        keep it in front of whoever watches `kubectl get cfgr`. Best effort, run beside the fan-out: a
        failed list is logged and the rollout goes on (a failed final patch of a Halted one is logged by
        the orchestrator).
        """
        selector = refresh_selector(route=route.name, parameter_name=parameter_name, halted=True)
        try:
            items = await self._blocking.call(
                self._kube.list, kube.REFRESHES, namespace, label_selector=selector
            )
        except KubeError as error:
            logger.warning("cannot look for Halted rollouts of %s: %s", parameter_name, error)
            return
        for item in items:
            current = item.get("status") or {}
            spec = ConfigRefreshSpec.from_body(item.get("spec") or {})
            older = spec.parameter
            name = str((item.get("metadata") or {}).get("name", ""))
            if (
                current.get("phase") != HALTED
                or name == successor
                or older.name != parameter_name
                or spec.targets
                or older.key is None
                or older.key >= key
            ):
                continue
            metadata = item.get("metadata") or {}
            generation = int(metadata.get("generation") or 1)
            halted = Subject(
                namespace, name, generation, current, lambda *_: None, str(metadata.get("uid", ""))
            )
            await self.mark_superseded(halted, successor)
            post_event("Normal", "TookOver", f"the Halted rollout {name} of an older version is Superseded")

    async def supersede_by_store(
        self, subject: Subject, route: Route, scope: Mapping[str, str], snapshot: ParameterSnapshot
    ) -> None:
        """Parameter Store already holds a newer version: make sure it has a rollout, and step aside."""
        try:
            recorded = await self._recorder.record(route, snapshot, trigger=Trigger.RESYNC, scope=scope)
        except KubeError as error:
            raise RetryLater(f"cannot create the successor rollout: {error}", delay=5) from None
        await self.mark_superseded(subject, recorded.name)
