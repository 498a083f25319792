"""Per-endpoint circuit breakers shared by every rollout, so a dead instance costs one fast failure.

Without a breaker every rollout pays a full call timeout (or a reconnect) per attempt for each instance
that is gone but still registered. With one, after ``failure_threshold`` consecutive transport failures
the endpoint is *open*: calls fail at once for ``cool_down_seconds``; then it is *half-open* and a single
probe call decides between *closed* (success) and *open* again (failure). Only failures that say the
endpoint is unreachable or overloaded count; an answer, even an error answer such as INVALID_ARGUMENT,
proves the endpoint is alive.

Everything runs on one event loop, so the state needs no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from enum import StrEnum

import grpc

from refresh_operator.fanout import metrics

ENDPOINT_FAILURE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
"""Codes that count against an endpoint's circuit breaker (it is unreachable, silent or overloaded)."""


class BreakerState(StrEnum):
    """Where an endpoint's breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """The breaker of one endpoint. Use ``allow()`` before a call, then exactly one of ``record_success()``,
    ``record_failure()`` or ``release()`` (the call ended without saying anything about the endpoint)."""

    def __init__(
        self,
        *,
        failure_threshold: int,
        cool_down_seconds: float,
        monotonic: Callable[[], float],
        on_change: Callable[[], None],
    ) -> None:
        self._threshold = failure_threshold
        self._cool_down = cool_down_seconds
        self._monotonic = monotonic
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cool-down has passed reads as half-open."""
        if self._state is BreakerState.OPEN and self._monotonic() - self._opened_at >= self._cool_down:
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Transport failures since the last success."""
        return self._failures

    def allow(self) -> bool:
        """May a call go out now? In half-open only one probe at a time is allowed."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until a call may be allowed again (0 when it may go now)."""
        state = self.state
        if state is BreakerState.OPEN:
            return max(0.0, self._cool_down - (self._monotonic() - self._opened_at))
        return 0.0

    def record_success(self) -> None:
        """The endpoint answered: close the breaker."""
        changed = self._state is not BreakerState.CLOSED
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probe_in_flight = False
        if changed:
            self._on_change()

    def record_failure(self) -> None:
        """The endpoint was unreachable or overloaded: count it, and open at the threshold (at once when
        the failure was the half-open probe)."""
        self._failures += 1
        state = self.state
        if state is BreakerState.HALF_OPEN or (
            state is BreakerState.CLOSED and self._failures >= self._threshold
        ):
            self._state = BreakerState.OPEN
            self._opened_at = self._monotonic()
            self._probe_in_flight = False
            self._on_change()
        elif state is BreakerState.OPEN:
            # A call allowed before the breaker opened failed late: restart the cool-down.
            self._opened_at = self._monotonic()

    def record_error(self, code: grpc.StatusCode) -> None:
        """The call failed with `code`: a failure of the endpoint (ENDPOINT_FAILURE_CODES), or else an
        answer (the endpoint is reachable; the error is the request's or the instance's)."""
        if code in ENDPOINT_FAILURE_CODES:
            self.record_failure()
        else:
            self.record_success()

    def release(self) -> None:
        """The call ended (cancelled, local error) without news about the endpoint: free the probe slot."""
        self._probe_in_flight = False


class BreakerRegistry:
    """One breaker per endpoint address, shared across rollouts for the operator's lifetime."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cool_down_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if cool_down_seconds < 0:
            raise ValueError(f"cool_down_seconds must be >= 0, got {cool_down_seconds}")
        self._threshold = failure_threshold
        self._cool_down = cool_down_seconds
        self._monotonic = monotonic
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, address: str) -> CircuitBreaker:
        """The breaker of ``address``, created closed on first use."""
        breaker = self._breakers.get(address)
        if breaker is None:
            breaker = CircuitBreaker(
                failure_threshold=self._threshold,
                cool_down_seconds=self._cool_down,
                monotonic=self._monotonic,
                on_change=self._publish,
            )
            self._breakers[address] = breaker
        return breaker

    def state(self, address: str) -> BreakerState:
        """The state of ``address``'s breaker (closed if never seen)."""
        breaker = self._breakers.get(address)
        return BreakerState.CLOSED if breaker is None else breaker.state

    def open_count(self) -> int:
        """How many endpoints are not closed (open or half-open)."""
        return sum(1 for breaker in self._breakers.values() if breaker.state is not BreakerState.CLOSED)

    def forget_missing(self, live_addresses: Iterable[str]) -> int:
        """Drop breakers of endpoints no longer discovered; returns how many were dropped."""
        live = set(live_addresses)
        return self.forget(address for address in list(self._breakers) if address not in live)

    def forget(self, addresses: Iterable[str]) -> int:
        """Drop the breakers of ``addresses`` (endpoints gone or long idle); returns how many were dropped."""
        gone = [address for address in addresses if self._breakers.pop(address, None) is not None]
        if gone:
            self._publish()
        return len(gone)

    def _publish(self) -> None:
        metrics.OPEN_BREAKERS.set(self.open_count())
