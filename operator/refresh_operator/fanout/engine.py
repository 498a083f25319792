"""The fan-out: one Refresh call to every target, in parallel, bounded, with deadlines, retries and breakers.

Every target runs as its own task, so a slow or black-holed instance only ever costs its own attempts:
each call carries ``timeout_seconds`` (never more than what remains of the rollout), and the whole rollout
stops at ``deadline_seconds``. A semaphore bounds the calls in flight (not the tasks waiting out a
backoff). Tasks are started as slots free up (``max_concurrency`` at first, one more each time a target
finishes or starts waiting out a backoff), so a rollout of thousands of targets at the default
concurrency does not park thousands of tasks, each with its own timer, on the semaphore. Which failures
are retried: see ``fanout.attempts``. An endpoint's open circuit breaker makes an attempt fail at once;
the next attempt waits for the breaker's cool-down if the deadline allows.

The run is restart-safe (targets already acknowledged in an earlier run of the same rollout are skipped)
and cancellable (a superseded rollout stops its calls within a loop iteration).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from configrefresh.v1 import refresh_service_pb2 as pb
from refresh_operator.backoff import backoff_delays
from refresh_operator.fanout import metrics
from refresh_operator.fanout.attempts import (
    RECONNECT_SETTLE_SECONDS,
    RESULTS,
    RETRYABLE_CODES,
    AttemptFailed,
    being_cancelled,
    channel_closed,
    is_retryable,
    short,
)
from refresh_operator.fanout.breaker import (
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
)
from refresh_operator.fanout.channels import ChannelPool, CredentialFileError
from refresh_operator.fanout.credentials import call_metadata
from refresh_operator.fanout.launcher import Launcher
from refresh_operator.fanout.plaintext import plaintext_refusal, token_refusal
from refresh_operator.fanout.policy import RefreshPolicy
from refresh_operator.fanout.states import InstanceState, get_states
from refresh_operator.fanout.targets import Result, Target, TargetOutcome
from refresh_operator.fanout.tokens import TokenCache, TokenError

log = logging.getLogger(__name__)
__all__ = ["CANCELLED_ERROR", "RETRYABLE_CODES", "Clock", "FanOut", "is_retryable"]

CANCELLED_ERROR = "cancelled: the rollout was stopped before this target finished"


class Clock(Protocol):
    """Wall time for acknowledgment stamps, monotonic time for deadlines (the ``time`` module fits)."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


@dataclass(frozen=True)
class _Rollout:
    request: pb.RefreshRequest
    policy: RefreshPolicy
    metadata: grpc.aio.Metadata  # built once per rollout: grpc.aio converts a tuple on every call
    semaphore: asyncio.Semaphore
    deadline: float  # on the monotonic clock


class FanOut:
    """Runs rollouts over a shared channel pool and breaker registry (one ``FanOut`` per operator)."""

    def __init__(
        self,
        *,
        channels: ChannelPool,
        breakers: BreakerRegistry,
        clock: Clock = time,
        rng: random.Random | None = None,
        tokens: TokenCache | None = None,
    ) -> None:
        self._channels = channels
        self._breakers = breakers
        self._tokens = tokens
        self._clock = clock
        self._rng = rng or random.Random()

    async def run(
        self,
        *,
        targets: Sequence[Target],
        request: pb.RefreshRequest,
        policy: RefreshPolicy,
        already_done: Mapping[str, TargetOutcome] | None = None,
        on_outcome: Callable[[TargetOutcome], None] | None = None,
        cancel: asyncio.Event | None = None,
        started_at: float | None = None,
    ) -> list[TargetOutcome]:
        """Refresh every target; return one outcome per distinct instance id, in the order of ``targets``.

        ``already_done`` (by instance id) holds outcomes of an earlier run of the same rollout: those that
        were acknowledged (Applied, Stale, Rejected) are returned as they are and not called again; Failed
        ones are tried again. ``on_outcome`` is called once per target finished in this run, as it
        finishes (not for skipped or cancelled targets); an exception in it is logged and ignored.
        ``cancel`` set → outstanding calls stop at once and unfinished targets come back Failed with
        ``CANCELLED_ERROR``. ``started_at`` (epoch seconds) lets a resumed rollout keep its original
        deadline; by default the deadline runs from this call.
        """
        start = self._clock.monotonic()
        self._breakers.forget(self._channels.sweep_idle())
        elapsed_before = 0.0 if started_at is None else max(0.0, self._clock.time() - started_at)
        deadline = start + policy.deadline_seconds - elapsed_before

        ordered: dict[str, Target] = {}
        for target in targets:
            ordered.setdefault(target.instance_id, target)
        previous = already_done or {}
        skipped = {
            instance_id: previous[instance_id]
            for instance_id in ordered
            if instance_id in previous and previous[instance_id].result.acknowledged
        }
        todo = [target for instance_id, target in ordered.items() if instance_id not in skipped]
        finished: dict[str, TargetOutcome] = {}

        def emit(outcome: TargetOutcome) -> None:
            finished[outcome.target.instance_id] = outcome
            if on_outcome is not None:
                try:
                    on_outcome(outcome)
                except Exception:
                    log.exception("on_outcome callback failed for %s", outcome.target.instance_id)

        try:
            refusal = plaintext_refusal(request, policy)
            if refusal is not None:
                raise CredentialFileError(refusal)
            metadata = await call_metadata(policy, self._tokens)
            self._channels.prepare(policy.tls)
        except (CredentialFileError, TokenError) as exc:
            for target in todo:
                emit(TargetOutcome(target, Result.FAILED, 0, 0, str(exc), None))
            return self._collect(ordered, skipped, finished)

        if todo and not (cancel is not None and cancel.is_set()):
            rollout = _Rollout(
                request=request,
                policy=policy,
                metadata=grpc.aio.Metadata(*metadata),
                semaphore=asyncio.Semaphore(policy.max_concurrency),
                deadline=deadline,
            )
            completed = await self._run_tasks(todo, rollout, emit, cancel)
            if completed:
                metrics.FANOUT_DURATION.observe(self._clock.monotonic() - start)
        outcomes = self._collect(ordered, skipped, finished)
        if log.isEnabledFor(logging.INFO):
            counts = collections.Counter(outcome.result for outcome in outcomes)
            log.info(
                "fan-out %s: %d targets, %s in %.1f ms",
                request.refresh_id,
                len(outcomes),
                ", ".join(f"{result.value}={counts[result]}" for result in Result),
                (self._clock.monotonic() - start) * 1000,
            )
        return outcomes

    async def states(
        self, targets: Sequence[Target], *, name_prefix: str, policy: RefreshPolicy
    ) -> dict[str, InstanceState | None]:
        """Ask each target (once) what it holds under ``name_prefix``; see fanout/states.py. A policy whose
        credentials cannot be had (or would travel in clear) asks no one: the result is empty."""
        try:
            refusal = token_refusal(policy)
            if refusal is not None:
                raise CredentialFileError(refusal)
            metadata = await call_metadata(policy, self._tokens)
            self._channels.prepare(policy.tls)
        except (CredentialFileError, TokenError) as exc:
            log.warning("GetState of %d instance(s) not sent: %s", len(targets), exc)
            return {}
        return await get_states(
            targets,
            name_prefix=name_prefix,
            policy=policy,
            metadata=metadata,
            channels=self._channels,
            breakers=self._breakers,
        )

    async def _run_tasks(
        self,
        todo: list[Target],
        rollout: _Rollout,
        emit: Callable[[TargetOutcome], None],
        cancel: asyncio.Event | None,
    ) -> bool:
        """Run one task per target until all finish (True) or ``cancel`` is set (False). Tasks start as
        slots free up: ``max_concurrency`` at first, then one more whenever a target finishes or begins
        to wait out a backoff (so a backoff never holds back the targets not yet started)."""
        all_done = asyncio.Event()
        left = len(todo)

        async def one(target: Target, launcher: Launcher) -> None:
            # the launcher comes as an argument, never from this scope (launcher.py says why)
            nonlocal left
            try:
                emit(await self._refresh_target(target, rollout, launcher.start_next))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not hang the rollout: fail this target, say why
                log.exception("refresh of %s failed unexpectedly", target.instance_id)
                emit(TargetOutcome(target, Result.FAILED, 0, 0, f"INTERNAL: {type(exc).__name__}", None))
            finally:
                left -= 1
                if left == 0:
                    all_done.set()
                launcher.start_next()

        launcher = Launcher(todo, one)
        for _ in range(min(rollout.policy.max_concurrency, len(todo))):
            launcher.start_next()
        waiters = [asyncio.create_task(all_done.wait())]
        if cancel is not None:
            waiters.append(asyncio.create_task(cancel.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await launcher.stop(waiters)
        return all_done.is_set()

    def _collect(
        self,
        ordered: Mapping[str, Target],
        skipped: Mapping[str, TargetOutcome],
        finished: Mapping[str, TargetOutcome],
    ) -> list[TargetOutcome]:
        outcomes: list[TargetOutcome] = []
        for instance_id, target in ordered.items():
            outcome = finished.get(instance_id) or skipped.get(instance_id)
            if outcome is None:
                outcome = TargetOutcome(target, Result.FAILED, 0, 0, CANCELLED_ERROR, None)
            outcomes.append(outcome)
        return outcomes

    async def _refresh_target(
        self, target: Target, rollout: _Rollout, on_backoff: Callable[[], None] = lambda: None
    ) -> TargetOutcome:
        policy = rollout.policy
        breaker = self._breakers.get(target.address)
        monotonic = self._clock.monotonic

        def remaining() -> float:
            return max(0.0, rollout.deadline - monotonic())

        delays: Iterator[float] | None = None  # drawn only once an attempt failed
        attempts = 0
        error = "not attempted"
        while True:
            left = remaining()
            if left <= 0:
                error = f"rollout deadline of {policy.deadline_seconds:g}s passed; last error: {error}"
                break
            attempts += 1
            try:
                return await self._attempt(target, breaker, rollout, left, attempts)
            except AttemptFailed as failure:
                error = f"{failure} (attempt {attempts}/{policy.max_attempts})"
                metrics.count_attempt(failure.code)
                if not failure.retryable or attempts >= policy.max_attempts:
                    break
                if delays is None:
                    delays = backoff_delays(
                        base_seconds=policy.backoff_base_seconds,
                        max_seconds=policy.backoff_max_seconds,
                        remaining=remaining,
                        rng=self._rng,
                    )
                delay = max(next(delays), failure.wait_at_least)
                if failure.code == "UNAVAILABLE":
                    # The channel now sits in reconnect backoff and fails every call fast until its next
                    # attempt: a retry drawn inside that window fails too, although a restarted instance
                    # is back. Retry after the channel has had its chance to reconnect.
                    delay = max(delay, RECONNECT_SETTLE_SECONDS)
            if delay >= remaining():
                error = (
                    f"rollout deadline of {policy.deadline_seconds:g}s comes before the next retry; {error}"
                )
                break
            on_backoff()
            await asyncio.sleep(delay)
        log.debug("target %s (%s) failed: %s", target.instance_id, target.address, error)
        return TargetOutcome(target, Result.FAILED, 0, attempts, error, None)

    async def _attempt(
        self,
        target: Target,
        breaker: CircuitBreaker,
        rollout: _Rollout,
        remaining: float,
        attempt: int,
    ) -> TargetOutcome:
        if breaker.state is BreakerState.OPEN:
            raise self._circuit_open(target, breaker)
        try:
            if rollout.semaphore.locked():  # wait for a slot, but never past the rollout deadline
                async with asyncio.timeout(remaining):
                    await rollout.semaphore.acquire()
            else:
                await rollout.semaphore.acquire()  # free: no timer needed
        except TimeoutError:
            raise AttemptFailed(
                code="DEADLINE_EXCEEDED",
                detail="no call slot free before the rollout deadline",
                retryable=False,
            ) from None
        try:
            if not breaker.allow():  # another call holds the half-open probe
                raise self._circuit_open(target, breaker)
            try:
                stub = self._channels.stub(target.address, rollout.policy.tls)
                response = await stub.Refresh(
                    rollout.request,
                    timeout=min(rollout.policy.timeout_seconds, max(remaining, 0.001)),
                    metadata=rollout.metadata,
                    wait_for_ready=rollout.policy.wait_for_ready,
                )
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                breaker.record_error(code)
                raise AttemptFailed(
                    code=code.name, detail=short(exc.details()), retryable=is_retryable(code)
                ) from None
            except asyncio.CancelledError:
                breaker.release()
                if being_cancelled():
                    raise  # the rollout is stopping (superseded, or the operator shuts down)
                raise channel_closed() from None
            except BaseException:
                breaker.release()
                raise
        finally:
            rollout.semaphore.release()
        breaker.record_success()
        metrics.count_attempt("OK")
        result = RESULTS.get(response.result)
        if result is None:
            raise AttemptFailed(
                code="UNKNOWN", detail=f"instance answered result {response.result}", retryable=False
            )
        # podSync registers pods as "<namespace>.<pod>"; the pod itself answers with its pod name (k8s-pod).
        answered_as = response.instance_id
        if (
            answered_as
            and answered_as != target.instance_id
            and answered_as != target.attributes.get("k8s-pod", target.instance_id)
        ):
            log.warning(
                "instance at %s answered as %r, expected %r",
                target.address,
                response.instance_id,
                target.instance_id,
            )
        return TargetOutcome(
            target=target,
            result=result,
            version=int(response.applied_version),
            attempts=attempt,
            error=short(response.message) if result is Result.REJECTED else None,
            acknowledged_at=self._clock.time(),
        )

    def _circuit_open(self, target: Target, breaker: CircuitBreaker) -> AttemptFailed:
        return AttemptFailed(
            code="CIRCUIT_OPEN",
            detail=f"circuit breaker open for {target.address} after "
            f"{breaker.consecutive_failures} consecutive failures",
            retryable=True,
            wait_at_least=breaker.retry_after(),
        )
