"""The status writer: progress patches are throttled, stop is cooperative, final patches must land."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from refresh_operator import status
from refresh_operator.fanout import Result, TargetOutcome
from refresh_operator.kube import KubeError
from refresh_operator.rollouts.model import RetryLater, Subject
from refresh_operator.rollouts.status_writer import Progress, ProgressWriter, StatusWriter
from refresh_operator.values import ValueCache
from tests.unit.fakes.rollouts import FakeKube, targets

SUBJECT = Subject("team-a", "r-v3", 1, {}, lambda *_: None)


class InlineBlocking:
    """Runs the "blocking" call on the loop and tells waiters a call finished."""

    def __init__(self) -> None:
        self.called = asyncio.Condition()

    async def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            async with self.called:
                self.called.notify_all()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(10), self.called:
            await self.called.wait_for(predicate)


@pytest.fixture
def blocking() -> InlineBlocking:
    return InlineBlocking()


def applied(n: int) -> TargetOutcome:
    return TargetOutcome(targets(10)[n], Result.APPLIED, 3, 1, None, 0.0)


async def test_progress_is_patched_at_most_once_per_interval_counted_from_the_initial_patch(
    blocking: InlineBlocking,
) -> None:
    kube = FakeKube()
    writer = StatusWriter(blocking=blocking, kube_api=kube, values=ValueCache())  # type: ignore[arg-type]
    progress = Progress(targets(10), {}, cap=200)
    progress_writer = ProgressWriter(writer, SUBJECT, progress, interval=3600)
    progress_writer.start({"phase": status.IN_PROGRESS})
    await blocking.until(lambda: len(kube.status_patches) == 1)
    for n in range(10):  # within the interval: no patch until it has passed (here: never)
        progress_writer.record(applied(n))
    await asyncio.sleep(0.1)
    await progress_writer.stop()
    assert kube.patches_of("r-v3") == [{"phase": status.IN_PROGRESS}]
    assert progress.status()["progress"] == "10/10"


async def test_progress_waits_an_interval_then_the_latest_counts_are_patched(
    blocking: InlineBlocking,
) -> None:
    kube = FakeKube()
    writer = StatusWriter(blocking=blocking, kube_api=kube, values=ValueCache())  # type: ignore[arg-type]
    progress_writer = ProgressWriter(writer, SUBJECT, Progress(targets(10), {}, cap=200), interval=0.2)
    progress_writer.start({"phase": status.IN_PROGRESS})
    for n in range(4):
        progress_writer.record(applied(n))
    await blocking.until(lambda: len(kube.status_patches) == 2)
    await progress_writer.stop()
    patches = kube.patches_of("r-v3")
    assert [patch.get("phase") for patch in patches] == [status.IN_PROGRESS, None]
    assert patches[1]["progress"] == "4/10"


async def test_with_a_short_interval_each_change_is_patched_in_turn(blocking: InlineBlocking) -> None:
    kube = FakeKube()
    writer = StatusWriter(blocking=blocking, kube_api=kube, values=ValueCache())  # type: ignore[arg-type]
    progress = Progress(targets(3), {}, cap=200, waves=[1, 3])
    progress_writer = ProgressWriter(writer, SUBJECT, progress, interval=0.01)
    progress_writer.start({"phase": status.IN_PROGRESS})
    for n in range(3):
        progress_writer.record(applied(n))

        def shown(n: int = n) -> bool:
            return any(p.get("progress") == f"{n + 1}/3" for p in kube.patches_of("r-v3"))

        await blocking.until(shown)
    await progress_writer.stop()
    assert kube.patches_of("r-v3")[-1]["waves"] == [1, 3]


async def test_stop_waits_for_the_initial_patch_and_sends_nothing_after(blocking: InlineBlocking) -> None:
    kube = FakeKube()
    writer = StatusWriter(blocking=blocking, kube_api=kube, values=ValueCache())  # type: ignore[arg-type]
    progress_writer = ProgressWriter(writer, SUBJECT, Progress(targets(2), {}, cap=200), interval=3600)
    progress_writer.start({"phase": status.IN_PROGRESS})
    await progress_writer.stop()
    progress_writer.record(applied(0))
    await asyncio.sleep(0.05)
    assert kube.patches_of("r-v3") == [{"phase": status.IN_PROGRESS}]


class FailingKube(FakeKube):
    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code
        self.attempts = 0

    def patch_status(self, plural: str, namespace: str, name: str, status: Any) -> None:
        self.attempts += 1
        raise KubeError(f"HTTP {self.code}", status=self.code)


async def test_a_final_patch_that_keeps_failing_asks_for_a_retry(
    blocking: InlineBlocking, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    kube = FailingKube(500)
    writer = StatusWriter(blocking=blocking, kube_api=kube, values=ValueCache())  # type: ignore[arg-type]
    with pytest.raises(RetryLater):
        await writer.finish(SUBJECT, phase=status.SUCCEEDED, extra={}, conditions=[])
    assert kube.attempts == 5


async def test_a_vanished_object_and_a_failed_progress_patch_are_not_errors(blocking: InlineBlocking) -> None:
    gone = FailingKube(404)
    writer = StatusWriter(blocking=blocking, kube_api=gone, values=ValueCache())  # type: ignore[arg-type]
    await writer.finish(SUBJECT, phase=status.SUCCEEDED, extra={}, conditions=[])
    flaky = FailingKube(500)
    writer = StatusWriter(blocking=blocking, kube_api=flaky, values=ValueCache())  # type: ignore[arg-type]
    await writer.patch("team-a", "r-v3", {"progress": "1/2"})
    assert (gone.attempts, flaky.attempts) == (1, 1)


async def test_finish_sets_started_at_once_and_clears_the_halted_label(blocking: InlineBlocking) -> None:
    kube = FakeKube()
    writer = StatusWriter(blocking=blocking, kube_api=kube, values=ValueCache())  # type: ignore[arg-type]
    halted = Subject("team-a", "r-v3", 2, {"phase": "Halted", "startedAt": "then"}, lambda *_: None)
    await writer.finish(halted, phase=status.FAILED, extra={}, conditions=[])
    final = kube.final("r-v3")
    assert "startedAt" not in final
    assert final["observedGeneration"] == 2
    assert kube.patches == [("r-v3", {"metadata": {"labels": {"configrefresh.io/halted": None}}})]
    await writer.finish(SUBJECT, phase=status.SUCCEEDED, extra={}, conditions=[])
    assert kube.final("r-v3")["startedAt"] == kube.final("r-v3")["completedAt"]


class ThreadBlocking:
    """Runs the blocking call on a thread, as the operator's pool does."""

    async def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)


class SlowKube(FakeKube):
    """An API server that answers status patches only once `answer` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = threading.Event()

    def patch_status(self, plural: str, namespace: str, name: str, status: Any) -> None:
        if not self.answer.wait(10):
            raise KubeError("no answer", status=504)
        super().patch_status(plural, namespace, name, status)


@pytest.mark.parametrize("ending", ["finish", "halt"])
async def test_the_consumer_hears_a_rollout_is_over_before_its_final_patch_returns(ending: str) -> None:
    """The consumer ends the key's hold on this (coalescing.py): a writer waiting for the final status must
    not be able to write its next change before the hold has ended."""
    values = ValueCache()
    kube = SlowKube()
    writer = StatusWriter(blocking=ThreadBlocking(), kube_api=kube, values=values)  # type: ignore[arg-type]
    if ending == "finish":
        ended = writer.finish(SUBJECT, phase=status.SUCCEEDED, extra={}, conditions=[])
    else:
        ended = writer.halt(SUBJECT, extra={}, reason="WaveFailed", message="wave 1/2 failed")
    ending_task = asyncio.create_task(ended)
    try:
        async with asyncio.timeout(5):
            await values.wait_fan_out("team-a", "r-v3")
        assert kube.status_patches == [], "the final patch has not been answered yet"
        assert not ending_task.done()
    finally:
        kube.answer.set()
    await ending_task
    assert kube.final("r-v3")["phase"] == (status.SUCCEEDED if ending == "finish" else "Halted")


_real_sleep = asyncio.sleep


async def _no_sleep(delay: float, result: Any = None) -> Any:
    return await _real_sleep(0, result)
