"""Per-key coalescing of change events: a lone change at once, a burst in at most a few runs.

Parameter Store answers in milliseconds, so merging only the reads that happen to overlap leaves a burst
of writes to one key (100 in a second) as many rollouts as reads that did not overlap: every rollout is a
fan-out to the whole fleet, most of them superseded a moment later. Delaying every change instead would
cost the single-change latency that matters most. So, per key:

- the first change of a quiet key runs at once (leading edge: a lone change waits for nothing);
- changes that arrive while that key's run is going on (or less than `quiet_seconds` after it; none by
  default) join ONE follow-up batch. The batch runs when no change joined it for `settle_seconds`
  or, in a burst that goes on, once it has waited its window (`first_window_seconds`, doubling for each
  further follow-up of the same burst up to `max_window_seconds`), and never while a run of the same key is
  going on. A key that has had a follow-up stays in its burst until it has been quiet for `settle_seconds`.
  A burst of D seconds therefore costs at most 2 + ceil((D - 1 s) / 2 s) runs: 100 writes in 1-3 s give
  three (the first, one during the burst, one after it).

A key's run covers the fan-out it started: with a `hold` (the consumer waits there for the rollouts of the
ConfigRefresh objects the run created, at most `hold_max_seconds`), the run's submitters get their outcome
as soon as the work is done, but the key stays busy until the hold ends. Changes that arrive meanwhile
join the one follow-up. Why: on a loaded machine the burst reaches the operator spread over much longer
than it took to write (deliveries slow down, gaps open between them), and a follow-up per window would
then start rollouts that only supersede each other; a fan-out slows down with the machine too, so
counting it as part of the run keeps the number of runs of a burst near its unloaded value. A quiet key
pays nothing: its change still runs at once, and a change written after the previous one was rolled out
finds the key free.

A change that arrives during the hold of a key not in a burst, and is the only one to arrive there, starts
as soon as the hold ends, and the key stays out of a burst: that is a sequential writer that saw the
previous rollout's final status a moment before the hold's end reached the key (the rollout ends the hold as
it sends its final status patch, rollouts/status_writer.py, but on a busy event loop the hand-over can still
come after the writer's next change). Waiting for it `settle_seconds` cost such a change half a second, and
put the key in a burst in which every later sequential change, arriving within `settle_seconds` of the
previous run, waited again. A second change during the same hold makes it a burst, as before, and so does
another lone change during the next hold (this goes once until the key is quiet again): a burst can cost one
run more than the bound above, when its second delivery comes alone during the first fan-out. Likewise a
follow-up of one change that found the key idle (in a burst, not yet settled) and that no other change
joined while it waited ends the burst: the next change of a free key runs at once.

A key counts as busy only while its run (with its hold) is going on, not for a time after it: sequential
changes, each written after the previous one was rolled out (so after its run), are each the first of a
quiet key and wait for nothing, however close together they come (a 0.1 s quiet time made every change of
a 10/s sequence wait 0.5 s). A burst is recognised by a change arriving while the previous one is still
being read and recorded; from then on the longer `settle_seconds` rides out the gaps a loaded machine
puts between deliveries.

A batch's run starts after every item in it arrived, so an item is never answered by a run that started
before it (the run reads state at least as new as the item). Items wait at most a window plus one run.
Runs of one key never overlap; different keys are independent.

With a `rank` (the consumer ranks a change by its event time), a key's follow-up keeps only its latest
item: an item that another of higher (or equal, arriving later) rank displaces from the follow-up gets the
`displaced` outcome at once, and one that arrives ranked below the waiting one gets it without joining. A
key then holds at most two items whatever the load: the one its run covers and the latest waiting one.
The consumer deletes a displaced message at once (the waiting one, still on the queue, covers its change:
its run reads after both arrived), so under overload the operator's memory does not follow the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - an item, as in the rest of the module's vocabulary
R = TypeVar("R")

logger = logging.getLogger("refresh_operator.coalescing")

ARRIVED = {
    "run": "the previous run (its read and create)",
    "hold": "the previous run's hold (its fan-out)",
    "idle": "the key's burst, the key idle",
}


@dataclasses.dataclass(frozen=True)
class Timing:
    """How long a key counts as busy, and how long a follow-up may gather (seconds)."""

    quiet_seconds: float = 0.0
    settle_seconds: float = 0.5
    first_window_seconds: float = 1.0
    max_window_seconds: float = 2.0
    max_batch: int = 1000
    hold_max_seconds: float = 5.0

    def hot_for(self, follow_ups: int) -> float:
        """How long after its last activity a key still takes changes into a follow-up."""
        return self.settle_seconds if follow_ups else self.quiet_seconds

    def window(self, follow_ups: int) -> float:
        grown: float = self.first_window_seconds * 2.0 ** min(follow_ups, 30)
        return min(grown, self.max_window_seconds)


@dataclasses.dataclass
class _Batch(Generic[I, R]):
    items: list[I]
    result: asyncio.Future[R]
    opened: float
    last_joined: float
    window: float
    joined: int = 0
    """Submissions that joined this follow-up (a displaced one counts too)."""
    arrived: str = "run"
    """What the key was doing when the first of them arrived: "run" (reading and recording), "hold" (its
    run's work done, the fan-out going on) or "idle" (nothing, but in a burst and not yet settled)."""


@dataclasses.dataclass
class _Key(Generic[I, R]):
    running: asyncio.Task[None] | None = None
    pending: _Batch[I, R] | None = None
    follow_ups: int = 0
    last_activity: float = 0.0
    timer: asyncio.TimerHandle | None = None
    holding: asyncio.Future[None] | None = None
    graced: bool = False
    """A change that came alone during a hold has started at the hold's end (once per quiet period)."""

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an outcome seen, so an exception nobody awaits (every submitter cancelled) is not reported."""
    if not future.cancelled():
        future.exception()


class Coalescer(Generic[K, I, R]):
    """Runs `work(key, items)` for batches of items submitted per key; see the module docstring."""

    def __init__(
        self,
        work: Callable[[K, list[I]], Awaitable[R]],
        timing: Timing | None = None,
        *,
        hold: Callable[[K, R], Awaitable[None]] | None = None,
        rank: Callable[[I], Any] | None = None,
        displaced: R | None = None,
    ) -> None:
        if (rank is None) != (displaced is None):
            raise ValueError("rank and displaced go together")
        self._work = work
        self._hold = hold
        self._rank = rank
        self._displaced = displaced
        self._timing = timing or Timing()
        self._keys: dict[K, _Key[I, R]] = {}
        self._hurry = False

    def __len__(self) -> int:
        """Keys with a run, a follow-up or recent activity (idle keys are forgotten)."""
        return len(self._keys)

    def _keep_latest(self, pending: _Batch[I, R], item: I) -> asyncio.Future[R] | None:
        """With a rank: make `item` the follow-up's only item, or leave the one waiting there. The future
        of the submitter that is displaced (or `item`'s own, if it ranks below) gets `displaced`; returns
        that future, or None when the batch simply takes the item."""
        if self._rank is None or not pending.items:
            return None
        assert self._displaced is not None
        loop = asyncio.get_running_loop()
        loser: asyncio.Future[R] = loop.create_future()
        loser.set_result(self._displaced)
        if self._rank(item) < self._rank(pending.items[-1]):
            return loser  # an older change (a late redelivery): the waiting one covers it
        # The waiting item's submitter is answered now; the batch's future is the new item's from here on.
        previous, pending.result = pending.result, loop.create_future()
        pending.result.add_done_callback(_retrieve)
        if not previous.done():
            previous.set_result(self._displaced)
        pending.items.clear()
        return None

    async def submit(self, key: K, item: I, *, on_merge: Callable[[], None] | None = None) -> R:
        """The outcome of the run that covered `item` (a run that started after `item` arrived).

        `on_merge` is called when the item joins a follow-up instead of running at once: the caller may
        stop counting it as work in progress while it waits. Cancelling the caller does not cancel the
        run, which other items may share.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        timing = self._timing
        state = self._keys.get(key)
        if state is None or (
            state.running is None
            and state.pending is None
            and now - state.last_activity >= timing.hot_for(state.follow_ups)
        ):
            if state is not None:
                state.cancel_timer()
            state = self._keys[key] = _Key()
            batch: _Batch[I, R] = _Batch([item], loop.create_future(), now, now, 0.0)
            batch.result.add_done_callback(_retrieve)
            state.last_activity = now
            self._start(key, state, batch)
        else:
            pending = state.pending
            if pending is None:
                pending = state.pending = _Batch([], loop.create_future(), now, now, 0.0)
                pending.window = timing.window(state.follow_ups)
                pending.arrived = (
                    "hold" if state.holding is not None else "run" if state.running is not None else "idle"
                )
                pending.result.add_done_callback(_retrieve)
            pending.joined += 1
            refused = self._keep_latest(pending, item)
            if refused is not None:
                return await refused
            pending.items.append(item)
            pending.last_joined = now
            state.last_activity = now
            batch = pending
            self._arm(key, state)
            if on_merge is not None:
                on_merge()
        return await asyncio.shield(batch.result)

    def flush(self) -> None:
        """Run every follow-up as soon as its key is free (shutdown: let the waiting items finish)."""
        self._hurry = True
        for key, state in list(self._keys.items()):
            if state.holding is not None:
                state.holding.cancel()  # the run ends now; its follow-up starts at once
            if state.pending is not None:
                self._arm(key, state)

    async def close(self) -> None:
        """Cancel the runs and the follow-ups (their submitters see CancelledError)."""
        running: list[asyncio.Task[None]] = []
        for state in self._keys.values():
            state.cancel_timer()
            if state.pending is not None:
                state.pending.result.cancel()
                state.pending = None
            if state.running is not None:
                state.running.cancel()
                running.append(state.running)
        self._keys.clear()
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    def _due(self, batch: _Batch[I, R]) -> float:
        if self._hurry or len(batch.items) >= self._timing.max_batch:
            return batch.opened
        return min(batch.last_joined + self._timing.settle_seconds, batch.opened + batch.window)

    def _arm(self, key: K, state: _Key[I, R]) -> None:
        """(Re)schedule the key's follow-up; a key with a run going on starts it when the run ends."""
        state.cancel_timer()
        if state.running is not None or state.pending is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._due(state.pending) - loop.time())
        state.timer = loop.call_later(delay, self._fire, key, state)

    def _fire(self, key: K, state: _Key[I, R]) -> None:
        state.timer = None
        if self._keys.get(key) is not state or state.running is not None or state.pending is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._due(state.pending):
            self._arm(key, state)
            return
        batch, state.pending = state.pending, None
        # A lone change that found the key idle, and no other joined it while it waited: the burst is
        # over (a sequential writer, each change after the previous rollout, would otherwise stay in it
        # and wait `settle_seconds` every time).
        ended = batch.arrived == "idle" and batch.joined == 1
        state.follow_ups = 0 if ended else state.follow_ups + 1
        logger.info(
            "Follow-up run of %s: %d change(s) joined over %.0f ms, the first during %s; starts %.0f ms after"
            " the last joined%s",
            key,
            batch.joined,
            (batch.last_joined - batch.opened) * 1000,
            ARRIVED[batch.arrived],
            (loop.time() - batch.last_joined) * 1000,
            "; the burst is over" if ended else "",
        )
        self._start(key, state, batch)

    def _start(self, key: K, state: _Key[I, R], batch: _Batch[I, R]) -> None:
        state.running = asyncio.get_running_loop().create_task(self._run(key, state, batch))

    async def _run(self, key: K, state: _Key[I, R], batch: _Batch[I, R]) -> None:
        try:
            outcome = await self._work(key, list(batch.items))
        except asyncio.CancelledError:
            batch.result.cancel()
            raise
        except Exception as error:
            if not batch.result.done():
                batch.result.set_exception(error)
        else:
            if not batch.result.done():
                batch.result.set_result(outcome)
            if self._hold is not None and not self._hurry:
                await self._held(key, state, outcome)
        finally:
            self._finished(key, state)

    async def _held(self, key: K, state: _Key[I, R], outcome: R) -> None:
        """Keep the key busy while `hold` runs, at most `hold_max_seconds`; its failure only ends it."""
        assert self._hold is not None
        holding = state.holding = asyncio.ensure_future(self._hold(key, outcome))
        try:
            await asyncio.wait({holding}, timeout=self._timing.hold_max_seconds)
        finally:
            state.holding = None
            holding.cancel()
            holding.add_done_callback(_retrieve)

    def _finished(self, key: K, state: _Key[I, R]) -> None:
        state.running = None
        if self._keys.get(key) is not state:
            return
        loop = asyncio.get_running_loop()
        state.last_activity = loop.time()
        pending = state.pending
        if pending is not None and self._goes_at_hold_end(state, pending):
            # One change during the fan-out of a key not in a burst: a sequential writer that saw the
            # previous rollout end a moment before the operator did. It goes now, as it would have had it
            # come a moment later, and the key does not enter a burst for it.
            state.pending = None
            state.graced = True
            logger.info(
                "Change of %s came during the previous run's hold; starts as the hold ends, %.0f ms later",
                key,
                (loop.time() - pending.opened) * 1000,
            )
            self._start(key, state, pending)
            return
        if pending is not None:
            self._arm(key, state)
            return
        state.cancel_timer()
        state.timer = loop.call_later(self._timing.hot_for(state.follow_ups), self._forget, key, state)

    @staticmethod
    def _goes_at_hold_end(state: _Key[I, R], pending: _Batch[I, R]) -> bool:
        """The key's follow-up is one change that came during the hold, the key is not in a burst, and
        no change has been let through this way since the key was last quiet (so a slow burst, one
        delivery per fan-out, still becomes a burst at its third change)."""
        lone_in_hold = pending.arrived == "hold" and pending.joined == 1
        return lone_in_hold and not state.graced and state.follow_ups == 0

    def _forget(self, key: K, state: _Key[I, R]) -> None:
        state.timer = None
        if self._keys.get(key) is state and state.running is None and state.pending is None:
            with contextlib.suppress(KeyError):
                del self._keys[key]
