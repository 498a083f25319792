"""Writing a rollout's status: throttled progress patches while it runs, one final patch when it ends.

Progress goes straight to the /status subresource as merge patches (kopf applies a handler's own patch
only once, at the end), so `kubectl get cfgr -w` shows Refreshed climbing. Per-instance results are
recorded as they come, which makes the rollout restart-safe: a resumed handler passes what status already
holds as `already_done`, and only unacknowledged instances are called again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from configrefresh_api.labels import LABEL_HALTED
from configrefresh_api.phases import HALTED
from refresh_operator import kube, metrics, status
from refresh_operator.aws import Blocking
from refresh_operator.backoff import backoff_bound
from refresh_operator.fanout import Target, TargetOutcome
from refresh_operator.kube import Kube, KubeError
from refresh_operator.rollouts.model import RetryLater, Subject
from refresh_operator.values import ValueCache

logger = logging.getLogger("refresh_operator.rollouts")

MUST_ATTEMPTS = 5
"""A status patch that must land (a final phase) is tried this many times before the handler retries."""

SETTLED_MEMORY = 4096
"""How many rollouts the process remembers having ended or halted (about 150 bytes each): enough for every
rollout of a burst across a thousand routes, while kopf may still hand over older copies of them."""


class StatusWriter:
    """Patches ConfigRefresh status and the Halted label; shared by every rollout of the process."""

    def __init__(self, *, blocking: Blocking, kube_api: Kube, values: ValueCache) -> None:
        self._blocking = blocking
        self._kube = kube_api
        self._values = values
        self._settled: collections.OrderedDict[tuple[str, str, str], str] = collections.OrderedDict()

    def settled(self, subject: Subject) -> str | None:
        """The phase this process wrote when the rollout ended (or halted), if it still remembers it.

        Why: kopf runs a handler with the object as its watch last delivered it, and waits only a few
        seconds for its own patches to come back through the watch. On an operator behind on its watch
        (a burst over a thousand routes) the rollout handler ran again on a copy taken before the rollout
        ended, still InProgress, and fanned out again: duplicate calls to every instance at the worst
        moment, and a Succeeded rollout could end up Failed. The status patch itself is not read back."""
        return self._settled.get(_settled_key(subject))

    def reopen(self, subject: Subject) -> None:
        """A Halted rollout resumed by request: it runs again, so it is no longer settled."""
        self._settled.pop(_settled_key(subject), None)

    def _settle(self, subject: Subject, phase: str) -> None:
        key = _settled_key(subject)
        self._settled[key] = phase
        self._settled.move_to_end(key)
        while len(self._settled) > SETTLED_MEMORY:
            self._settled.popitem(last=False)

    async def patch(self, namespace: str, name: str, patch: Mapping[str, Any], *, must: bool = False) -> None:
        """Merge `patch` into status. A vanished object is fine; a failed progress patch is logged, a
        failed final one (`must`) is retried a few times and then raised as RetryLater."""
        attempt = 0
        while True:
            try:
                await self._blocking.call(self._kube.patch_status, kube.REFRESHES, namespace, name, patch)
                return
            except KubeError as error:
                metrics.KUBE_API_ERRORS.labels("patch_refresh_status").inc()
                if error.status == 404:
                    return
                attempt += 1
                if not must or attempt >= MUST_ATTEMPTS:
                    if must:
                        raise RetryLater(f"status patch failed: {error}", delay=5) from None
                    logger.warning("Progress patch of %s/%s failed: %s", namespace, name, error)
                    return
                await asyncio.sleep(backoff_bound(attempt + 1, base_seconds=0.5, max_seconds=5))

    async def label_halted(self, namespace: str, name: str, halted: bool) -> None:
        """Best effort (see LABEL_HALTED): a failure only means a successor may not find this rollout."""
        labels = {"metadata": {"labels": {LABEL_HALTED: "true" if halted else None}}}
        try:
            await self._blocking.call(self._kube.patch, kube.REFRESHES, namespace, name, labels)
        except KubeError as error:
            metrics.KUBE_API_ERRORS.labels("patch_refresh").inc()
            if error.status != 404:
                logger.warning("Halted label of %s/%s not updated: %s", namespace, name, error)

    async def finish(
        self,
        subject: Subject,
        *,
        phase: str,
        extra: Mapping[str, Any],
        conditions: list[dict[str, Any]],
    ) -> None:
        """The final status: phase, completedAt, conditions and whatever `extra` counts."""
        existing = subject.current
        patch: dict[str, Any] = {
            "phase": phase,
            "completedAt": status.now_text(),
            "observedGeneration": subject.generation,
            "conditions": status.merge_conditions(existing.get("conditions") or [], conditions),
            **extra,
        }
        if "startedAt" not in existing and "startedAt" not in extra:
            patch["startedAt"] = patch["completedAt"]
        self._fan_out_over(subject)
        await self.patch(subject.namespace, subject.name, patch, must=True)
        self._settle(subject, phase)
        metrics.ROLLOUTS.labels(phase).inc()
        if existing.get("phase") == HALTED:
            await self.label_halted(subject.namespace, subject.name, False)

    async def halt(self, subject: Subject, *, extra: Mapping[str, Any], reason: str, message: str) -> None:
        """Phase Halted: no more fan-out until a person resumes or aborts the rollout."""
        generation = subject.generation
        self._fan_out_over(subject)
        await self.label_halted(subject.namespace, subject.name, True)
        await self.patch(
            subject.namespace,
            subject.name,
            {
                "phase": HALTED,
                "observedGeneration": generation,
                **extra,
                "conditions": status.merge_conditions(
                    subject.current.get("conditions") or [],
                    [
                        status.condition(
                            "Ready", status=False, reason=reason, message=message, generation=generation
                        ),
                        status.condition(
                            "Halted", status=True, reason=reason, message=message, generation=generation
                        ),
                    ],
                ),
            },
            must=True,
        )
        self._settle(subject, HALTED)
        metrics.ROLLOUTS.labels(HALTED).inc()

    def _fan_out_over(self, subject: Subject) -> None:
        """Tell the consumer the rollout's calls are over (it ends the key's hold, coalescing.py), before
        the final patch is sent rather than after it returns. Why: a writer that waits for each rollout's
        final status writes its next change as soon as the API server has the patch, and on a busy
        operator that change could reach the consumer before the patch's reply was handled here; it then
        counted as a change during the hold (a burst) and waited `settle_seconds` (500 ms). Nothing is
        called after this point, so a newer rollout starting now supersedes nothing in flight; a final
        patch that keeps failing no longer holds the key for `hold_max_seconds` either."""
        self._values.fan_out_done(subject.namespace, subject.name)


def _settled_key(subject: Subject) -> tuple[str, str, str]:
    return (subject.namespace, subject.name, subject.uid)


@dataclasses.dataclass
class Progress:
    """The counts and per-instance results of one running rollout, in the shape status holds them."""

    targets: Sequence[Target]
    outcomes: dict[str, TargetOutcome]
    cap: int
    waves: list[int] | None = None
    current_wave: int = 1

    def status(self) -> dict[str, Any]:
        counts = status.count(self.targets, self.outcomes)
        entries, truncated = status.instance_entries(self.targets, self.outcomes, cap=self.cap)
        fields: dict[str, Any] = {
            "targets": counts.targets,
            "refreshed": counts.refreshed,
            "failed": counts.failed,
            "stale": counts.stale,
            "gone": counts.gone,
            "progress": counts.progress,
            "instances": entries,
            "instancesTruncated": truncated,
        }
        if self.waves is not None:
            fields.update(waves=self.waves, currentWave=self.current_wave)
        return fields


class ProgressWriter:
    """Sends `progress` to status at most once per `interval` while a rollout runs.

    The initial patch (phase InProgress) goes out while the fan-out starts, not before it; progress
    patches and the caller's final patch come after it. The first progress patch waits an `interval`
    after the initial one, as the later ones do: a rollout shorter than that writes InProgress and its
    final status, and no progress patch (nor the watch event each one sends kopf) competes with its
    fan-out. The writer is never cancelled while a patch is in flight (the patch runs on a thread and
    would land after the final status, rolling `progress` back): `stop()` is cooperative and waits for
    it.
    """

    def __init__(
        self, writer: StatusWriter, subject: Subject, progress: Progress, *, interval: float
    ) -> None:
        self._writer = writer
        self._subject = subject
        self._progress = progress
        self._interval = interval
        self._dirty = asyncio.Event()
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, initial: Mapping[str, Any]) -> None:
        first = asyncio.create_task(self._writer.patch(self._subject.namespace, self._subject.name, initial))
        self._task = asyncio.create_task(self._loop(first))

    def changed(self) -> None:
        """Something in `progress` changed: a patch will follow (throttled)."""
        self._dirty.set()

    def record(self, outcome: TargetOutcome) -> None:
        self._progress.outcomes[outcome.target.instance_id] = outcome
        self._dirty.set()

    async def stop(self) -> None:
        self._done.set()
        self._dirty.set()
        if self._task is not None:
            await self._task

    async def _loop(self, first: asyncio.Task[None]) -> None:
        await first
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), timeout=self._interval)
            if self._done.is_set():
                return
            await self._dirty.wait()
            if self._done.is_set():
                return
            self._dirty.clear()
            await self._writer.patch(self._subject.namespace, self._subject.name, self._progress.status())
