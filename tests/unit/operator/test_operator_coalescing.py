"""Per-key coalescing (refresh_operator.coalescing): a lone item at once, a burst in a few runs, no item
answered by a run that started before it, runs of one key never overlapping."""

from __future__ import annotations

import asyncio
import functools
import math

import pytest

from refresh_operator.coalescing import Coalescer, Timing


class Work:
    """Records each run (key, items, start time); a run may be held until `release` is set."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, list[int], float]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.active: dict[str, int] = {}
        self.most_active = 0
        self.fail_next = False

    async def __call__(self, key: str, items: list[int]) -> str:
        self.runs.append((key, items, asyncio.get_running_loop().time()))
        self.active[key] = self.active.get(key, 0) + 1
        self.most_active = max(self.most_active, self.active[key])
        try:
            await self.release.wait()
            await asyncio.sleep(0.001)
            if self.fail_next:
                self.fail_next = False
                raise RuntimeError("run failed")
            return f"{key}:{items[-1]}"
        finally:
            self.active[key] -= 1


async def settle(tasks: list[asyncio.Task[str]]) -> list[str | BaseException]:
    return list(await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30))


async def test_a_lone_item_runs_at_once_and_alone() -> None:
    work = Work()
    merged: list[int] = []
    coalescer: Coalescer[str, int, str] = Coalescer(work, Timing(first_window_seconds=60))
    outcome = await asyncio.wait_for(coalescer.submit("k", 1, on_merge=lambda: merged.append(1)), 30)
    assert outcome == "k:1"
    assert [items for _, items, _ in work.runs] == [[1]]
    assert merged == []


async def test_sequential_items_each_after_the_previous_run_never_wait() -> None:
    work = Work()
    merged: list[int] = []
    coalescer: Coalescer[str, int, str] = Coalescer(work, Timing(first_window_seconds=60, settle_seconds=60))
    for index in range(5):
        outcome = coalescer.submit("k", index, on_merge=functools.partial(merged.append, index))
        assert await asyncio.wait_for(outcome, 30) == f"k:{index}"  # far below a 60 s window
    assert [items for _, items, _ in work.runs] == [[0], [1], [2], [3], [4]]
    assert merged == []


async def test_items_arriving_during_a_run_share_one_follow_up_after_it() -> None:
    work = Work()
    work.release.clear()
    merged: list[int] = []
    coalescer: Coalescer[str, int, str] = Coalescer(work, Timing(quiet_seconds=0.01, settle_seconds=0.05))
    first = asyncio.create_task(coalescer.submit("k", 0))
    await asyncio.sleep(0.01)
    rest = [
        asyncio.create_task(coalescer.submit("k", i, on_merge=functools.partial(merged.append, i)))
        for i in range(1, 6)
    ]
    await asyncio.sleep(0.05)
    assert [items for _, items, _ in work.runs] == [[0]]  # nothing starts while the key's run goes on
    work.release.set()
    outcomes = await settle([first, *rest])
    assert [items for _, items, _ in work.runs] == [[0], [1, 2, 3, 4, 5]]
    assert outcomes == ["k:0"] + ["k:5"] * 5
    assert merged == [1, 2, 3, 4, 5]
    assert work.most_active == 1


async def test_a_steady_burst_is_a_few_runs_none_older_than_its_items() -> None:
    timing = Timing(quiet_seconds=0.5, settle_seconds=0.5, first_window_seconds=0.2, max_window_seconds=0.4)
    work = Work()
    coalescer: Coalescer[str, int, str] = Coalescer(work, timing)
    loop = asyncio.get_running_loop()
    submitted: dict[int, float] = {}
    tasks = []
    started = loop.time()
    for index in range(60):
        submitted[index] = loop.time()
        tasks.append(asyncio.create_task(coalescer.submit("k", index)))
        await asyncio.sleep(0.01)
    duration = loop.time() - started
    outcomes = await settle(tasks)
    assert outcomes[-1] == "k:59"
    assert sorted(i for _, items, _ in work.runs for i in items) == list(range(60))
    for _, items, run_started in work.runs:
        assert all(submitted[i] <= run_started for i in items)  # no item answered by an older run
    # the first at once, then windows of 0.2, 0.4, 0.4 ... s while the burst lasts, then the last one
    bound = 2 + 1 + max(0, math.ceil((duration - timing.first_window_seconds) / timing.max_window_seconds))
    assert 2 <= len(work.runs) <= bound, (len(work.runs), duration)
    assert work.most_active == 1


async def test_keys_are_independent() -> None:
    work = Work()
    work.release.clear()
    coalescer: Coalescer[str, int, str] = Coalescer(work, Timing(first_window_seconds=60))
    held = asyncio.create_task(coalescer.submit("a", 1))
    await asyncio.sleep(0.01)
    other = asyncio.create_task(coalescer.submit("b", 2))
    await asyncio.sleep(0.05)
    assert [(key, items) for key, items, _ in work.runs] == [("a", [1]), ("b", [2])]
    work.release.set()
    assert await settle([held, other]) == ["a:1", "b:2"]


async def test_a_failed_run_fails_its_items_and_the_key_recovers() -> None:
    work = Work()
    work.release.clear()
    work.fail_next = True
    coalescer: Coalescer[str, int, str] = Coalescer(work, Timing(quiet_seconds=0.01, settle_seconds=0.05))
    first = asyncio.create_task(coalescer.submit("k", 1))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(coalescer.submit("k", 2))
    work.release.set()
    outcomes = await settle([first, second])
    assert isinstance(outcomes[0], RuntimeError)
    assert outcomes[1] == "k:2"


async def test_a_cancelled_submitter_does_not_cancel_the_shared_run() -> None:
    work = Work()
    work.release.clear()
    coalescer: Coalescer[str, int, str] = Coalescer(work, Timing(quiet_seconds=0.01, settle_seconds=0.05))
    first = asyncio.create_task(coalescer.submit("k", 0))
    await asyncio.sleep(0.01)
    a = asyncio.create_task(coalescer.submit("k", 1))
    b = asyncio.create_task(coalescer.submit("k", 2))
    await asyncio.sleep(0.01)
    a.cancel()
    work.release.set()
    outcomes = await settle([first, a, b])
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert outcomes[2] == "k:2"
    assert [items for _, items, _ in work.runs] == [[0], [1, 2]]


async def test_flush_runs_a_waiting_follow_up_without_its_window() -> None:
    work = Work()
    work.release.clear()
    coalescer: Coalescer[str, int, str] = Coalescer(
        work, Timing(quiet_seconds=60, settle_seconds=60, first_window_seconds=60, max_window_seconds=60)
    )
    first = asyncio.create_task(coalescer.submit("k", 0))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(coalescer.submit("k", 1))
    work.release.set()
    await asyncio.wait_for(first, 30)
    await asyncio.sleep(0.05)
    assert not waiting.done()  # a 60 s window
    coalescer.flush()
    assert await asyncio.wait_for(waiting, 30) == "k:1"


async def test_a_quiet_key_runs_at_once_again_and_is_forgotten() -> None:
    work = Work()
    coalescer: Coalescer[str, int, str] = Coalescer(
        work, Timing(quiet_seconds=0.05, first_window_seconds=60, max_window_seconds=60)
    )
    assert await asyncio.wait_for(coalescer.submit("k", 1), 30) == "k:1"
    await asyncio.sleep(0.3)
    assert len(coalescer) == 0
    # would wait a 60 s window if it were merged; the test's timeout is far below that
    assert await asyncio.wait_for(coalescer.submit("k", 2), 30) == "k:2"
    assert [items for _, items, _ in work.runs] == [[1], [2]]


async def test_close_cancels_waiting_items() -> None:
    work = Work()
    work.release.clear()
    coalescer: Coalescer[str, int, str] = Coalescer(work, Timing(first_window_seconds=60))
    first = asyncio.create_task(coalescer.submit("k", 0))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(coalescer.submit("k", 1))
    await asyncio.sleep(0.01)
    await coalescer.close()
    outcomes = await settle([first, waiting])
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
    assert len(coalescer) == 0


async def test_a_key_in_a_burst_stays_in_it_until_it_settles() -> None:
    work = Work()
    work.release.clear()
    merged: list[int] = []
    timing = Timing(quiet_seconds=0.01, settle_seconds=5.0, first_window_seconds=0.05)
    coalescer: Coalescer[str, int, str] = Coalescer(work, timing)
    first = asyncio.create_task(coalescer.submit("k", 0))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(coalescer.submit("k", 1, on_merge=functools.partial(merged.append, 1)))
    work.release.set()
    assert await settle([first, second]) == ["k:0", "k:1"]
    await asyncio.sleep(0.1)  # longer than quiet_seconds, shorter than settle_seconds
    third = asyncio.create_task(coalescer.submit("k", 2, on_merge=functools.partial(merged.append, 2)))
    assert await settle([third]) == ["k:2"]  # its window (0.1 s) ends it, not the 5 s settle
    assert merged == [1, 2]
    assert [items for _, items, _ in work.runs] == [[0], [1], [2]]


async def test_a_lone_change_on_an_idle_key_in_a_burst_ends_the_burst() -> None:
    # Sequential changes after a burst: the first waits for company (its window), none comes, so the
    # burst is over and the next change, written right after, runs at once.
    work = Work()
    work.release.clear()
    merged: list[int] = []
    timing = Timing(settle_seconds=60.0, first_window_seconds=0.05)
    coalescer: Coalescer[str, int, str] = Coalescer(work, timing)
    first = asyncio.create_task(coalescer.submit("k", 0))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(coalescer.submit("k", 1, on_merge=functools.partial(merged.append, 1)))
    work.release.set()
    assert await settle([first, second]) == ["k:0", "k:1"]  # a burst: the key is hot for 60 s
    third = coalescer.submit("k", 2, on_merge=functools.partial(merged.append, 2))
    assert await asyncio.wait_for(third, 30) == "k:2"  # waited its window (0.1 s) alone
    fourth = coalescer.submit("k", 3, on_merge=functools.partial(merged.append, 3))
    assert await asyncio.wait_for(fourth, 30) == "k:3"
    assert merged == [1, 2]  # the fourth ran at once
    assert [items for _, items, _ in work.runs] == [[0], [1], [2], [3]]
    await coalescer.close()


@pytest.mark.parametrize(("follow_ups", "window"), [(0, 1.0), (1, 2.0), (2, 2.0), (50, 2.0)])
def test_the_follow_up_window_doubles_up_to_its_bound(follow_ups: int, window: float) -> None:
    assert Timing().window(follow_ups) == window


async def test_a_run_covers_its_hold_and_items_arriving_during_it_share_one_follow_up() -> None:
    work = Work()
    released = asyncio.Event()
    holds: list[str] = []

    async def hold(key: str, outcome: str) -> None:
        holds.append(outcome)
        await released.wait()

    coalescer: Coalescer[str, int, str] = Coalescer(
        work, Timing(settle_seconds=0.01, first_window_seconds=0.01, hold_max_seconds=60), hold=hold
    )
    assert await asyncio.wait_for(coalescer.submit("k", 0), 30) == "k:0"  # answered before the hold ends
    rest = [asyncio.create_task(coalescer.submit("k", i)) for i in range(1, 4)]
    await asyncio.sleep(0.1)  # far past the follow-up's window: still held
    assert [items for _, items, _ in work.runs] == [[0]]
    released.set()
    assert await settle(rest) == ["k:3"] * 3
    assert [items for _, items, _ in work.runs] == [[0], [1, 2, 3]]
    assert holds == ["k:0", "k:3"]


class Holds:
    """A hold per run outcome that lasts until `release(outcome)`; `started` lists the holds begun."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._released: dict[str, asyncio.Event] = {}
        self._began = asyncio.Event()

    def _event(self, outcome: str) -> asyncio.Event:
        return self._released.setdefault(outcome, asyncio.Event())

    def release(self, outcome: str) -> None:
        self._event(outcome).set()

    async def wait_started(self, count: int) -> None:
        while len(self.started) < count:
            self._began.clear()
            await self._began.wait()

    async def __call__(self, key: str, outcome: str) -> None:
        self.started.append(outcome)
        self._began.set()
        await self._event(outcome).wait()


async def forgotten(coalescer: Coalescer[str, int, str]) -> bool:
    """Whether the coalescer forgets its keys within 30 s (an idle key out of a burst is forgotten)."""
    for _ in range(30_000):
        if not len(coalescer):
            return True
        await asyncio.sleep(0.001)
    return False


async def test_one_change_during_the_hold_of_a_quiet_key_starts_as_the_hold_ends() -> None:
    # A sequential writer that saw the previous rollout end a moment before the hold did: its change
    # waits neither the settle time (60 s here) nor a window, and the key does not enter a burst.
    work = Work()
    holds = Holds()
    merged: list[int] = []
    coalescer: Coalescer[str, int, str] = Coalescer(
        work, Timing(settle_seconds=60, first_window_seconds=60, hold_max_seconds=120), hold=holds
    )
    assert await asyncio.wait_for(coalescer.submit("k", 0), 30) == "k:0"
    await asyncio.wait_for(holds.wait_started(1), 30)
    second = asyncio.create_task(coalescer.submit("k", 1, on_merge=functools.partial(merged.append, 1)))
    await asyncio.sleep(0.05)
    assert [items for _, items, _ in work.runs] == [[0]]  # not while the hold goes on
    holds.release("k:0")
    assert await asyncio.wait_for(second, 30) == "k:1"
    assert merged == [1]
    await asyncio.wait_for(holds.wait_started(2), 30)
    holds.release("k:1")
    assert await forgotten(coalescer)  # a key in a burst would be kept for its 60 s settle time
    third = coalescer.submit("k", 2, on_merge=functools.partial(merged.append, 2))
    holds.release("k:2")
    assert await asyncio.wait_for(third, 30) == "k:2"
    assert merged == [1]
    assert [items for _, items, _ in work.runs] == [[0], [1], [2]]
    await coalescer.close()


async def test_a_lone_change_during_each_of_two_holds_in_a_row_is_a_burst_at_the_second() -> None:
    # A slow burst, one delivery per fan-out: the first lone change goes at its hold's end, the next one
    # waits for its follow-up as before (the bound on a burst's runs grows by one at most).
    work = Work()
    holds = Holds()
    coalescer: Coalescer[str, int, str] = Coalescer(
        work, Timing(settle_seconds=60, first_window_seconds=60, hold_max_seconds=120), hold=holds
    )
    assert await asyncio.wait_for(coalescer.submit("k", 0), 30) == "k:0"
    await asyncio.wait_for(holds.wait_started(1), 30)
    second = asyncio.create_task(coalescer.submit("k", 1))
    await asyncio.sleep(0.01)
    holds.release("k:0")
    assert await asyncio.wait_for(second, 30) == "k:1"
    await asyncio.wait_for(holds.wait_started(2), 30)
    third = asyncio.create_task(coalescer.submit("k", 2))
    await asyncio.sleep(0.01)
    holds.release("k:1")
    await asyncio.sleep(0.05)
    assert [items for _, items, _ in work.runs] == [[0], [1]]  # the third waits for its settle time
    coalescer.flush()
    assert await asyncio.wait_for(third, 30) == "k:2"
    await coalescer.close()


async def test_two_changes_during_one_hold_are_a_burst_and_wait_for_their_follow_up() -> None:
    work = Work()
    holds = Holds()
    coalescer: Coalescer[str, int, str] = Coalescer(
        work, Timing(settle_seconds=60, first_window_seconds=60, hold_max_seconds=120), hold=holds
    )
    assert await asyncio.wait_for(coalescer.submit("k", 0), 30) == "k:0"
    await asyncio.wait_for(holds.wait_started(1), 30)
    rest = [asyncio.create_task(coalescer.submit("k", i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    holds.release("k:0")
    await asyncio.sleep(0.05)
    assert [items for _, items, _ in work.runs] == [[0]]  # the follow-up waits for its settle time
    coalescer.flush()
    assert await settle(rest) == ["k:2", "k:2"]
    assert [items for _, items, _ in work.runs] == [[0], [1, 2]]
    await coalescer.close()


async def test_a_hold_ends_at_its_cap_and_at_flush() -> None:
    work = Work()

    async def forever(key: str, outcome: str) -> None:
        await asyncio.Event().wait()

    coalescer: Coalescer[str, int, str] = Coalescer(
        work, Timing(settle_seconds=0.01, first_window_seconds=0.01, hold_max_seconds=0.2), hold=forever
    )
    await coalescer.submit("k", 0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(coalescer.submit("k", 1), 30) == "k:1"
    assert loop.time() - started >= 0.15  # waited for the first run's hold to reach its cap

    held: Coalescer[str, int, str] = Coalescer(
        work, Timing(settle_seconds=0.01, first_window_seconds=0.01, hold_max_seconds=60), hold=forever
    )
    await held.submit("j", 0)
    waiting = asyncio.create_task(held.submit("j", 1))
    await asyncio.sleep(0.05)
    held.flush()  # shutdown: the hold ends, the follow-up runs at once
    assert await asyncio.wait_for(waiting, 30) == "j:1"
    await coalescer.close()
    await held.close()


async def test_with_a_rank_a_follow_up_keeps_only_its_latest_item() -> None:
    work = Work()
    work.release.clear()
    coalescer: Coalescer[str, int, str] = Coalescer(
        work, Timing(settle_seconds=0.01), rank=lambda item: item % 100, displaced="displaced"
    )
    first = asyncio.create_task(coalescer.submit("k", 0))
    await asyncio.sleep(0.01)
    # 1..5 arrive in order, then 102 (rank 2: older than 5, a late redelivery), all during the run
    rest = [asyncio.create_task(coalescer.submit("k", i)) for i in (1, 2, 3, 4, 5, 102)]
    await asyncio.sleep(0.05)
    assert [task.done() for task in rest] == [True, True, True, True, False, True]
    assert [task.result() for task in rest if task.done()] == ["displaced"] * 5
    work.release.set()
    outcomes = await settle([first, *rest])
    assert outcomes == ["k:0", "displaced", "displaced", "displaced", "displaced", "k:5", "displaced"]
    assert [items for _, items, _ in work.runs] == [[0], [5]]


async def test_an_equal_rank_arriving_later_displaces_the_waiting_item() -> None:
    work = Work()
    work.release.clear()
    coalescer: Coalescer[str, int, str] = Coalescer(
        work, Timing(settle_seconds=0.01), rank=lambda item: 0, displaced="displaced"
    )
    first = asyncio.create_task(coalescer.submit("k", 0))
    await asyncio.sleep(0.01)
    rest = [asyncio.create_task(coalescer.submit("k", i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    work.release.set()
    assert await settle([first, *rest]) == ["k:0", "displaced", "k:2"]


def test_a_rank_needs_a_displaced_outcome() -> None:
    with pytest.raises(ValueError, match="together"):
        Coalescer(Work(), rank=lambda item: item)
