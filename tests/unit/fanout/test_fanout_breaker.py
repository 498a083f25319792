"""Circuit breakers: closed → open after N consecutive failures → half-open after the cool-down → closed
on a successful probe, or open again on a failed one."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from refresh_operator.fanout import BreakerRegistry, BreakerState


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def registry(clock: ManualClock) -> BreakerRegistry:
    return BreakerRegistry(failure_threshold=3, cool_down_seconds=10.0, monotonic=clock)


def _fail(registry: BreakerRegistry, address: str, times: int) -> None:
    breaker = registry.get(address)
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def test_a_new_endpoint_is_closed_and_allows_calls(registry: BreakerRegistry) -> None:
    assert registry.state("10.0.0.1:50051") is BreakerState.CLOSED
    assert registry.get("10.0.0.1:50051").allow()
    assert registry.open_count() == 0


def test_opens_after_the_threshold_of_consecutive_failures(registry: BreakerRegistry) -> None:
    _fail(registry, "a:1", 2)
    assert registry.state("a:1") is BreakerState.CLOSED
    _fail(registry, "a:1", 1)
    assert registry.state("a:1") is BreakerState.OPEN
    assert not registry.get("a:1").allow()
    assert registry.get("a:1").retry_after() == pytest.approx(10.0)
    assert registry.open_count() == 1


def test_a_success_resets_the_failure_count(registry: BreakerRegistry) -> None:
    _fail(registry, "a:1", 2)
    registry.get("a:1").record_success()
    _fail(registry, "a:1", 2)
    assert registry.state("a:1") is BreakerState.CLOSED


def test_half_open_after_cool_down_allows_exactly_one_probe(
    registry: BreakerRegistry, clock: ManualClock
) -> None:
    _fail(registry, "a:1", 3)
    clock.now += 9.9
    assert registry.state("a:1") is BreakerState.OPEN
    assert registry.get("a:1").retry_after() == pytest.approx(0.1)
    clock.now += 0.1
    breaker = registry.get("a:1")
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # the probe is in flight
    assert registry.open_count() == 1


def test_successful_probe_closes(registry: BreakerRegistry, clock: ManualClock) -> None:
    _fail(registry, "a:1", 3)
    clock.now += 10
    breaker = registry.get("a:1")
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert registry.open_count() == 0


def test_failed_probe_opens_again_for_a_full_cool_down(registry: BreakerRegistry, clock: ManualClock) -> None:
    _fail(registry, "a:1", 3)
    clock.now += 10
    breaker = registry.get("a:1")
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(10.0)


def test_released_probe_lets_another_probe_go(registry: BreakerRegistry, clock: ManualClock) -> None:
    _fail(registry, "a:1", 3)
    clock.now += 10
    breaker = registry.get("a:1")
    assert breaker.allow()
    breaker.release()
    assert breaker.allow()


def test_breakers_are_per_endpoint_and_shared_by_address(registry: BreakerRegistry) -> None:
    _fail(registry, "a:1", 3)
    assert registry.state("b:1") is BreakerState.CLOSED
    assert registry.get("a:1") is registry.get("a:1")


def test_open_breakers_gauge_follows_transitions(registry: BreakerRegistry, clock: ManualClock) -> None:
    _fail(registry, "a:1", 3)
    _fail(registry, "b:1", 3)
    assert REGISTRY.get_sample_value("config_refresh_open_circuit_breakers") == 2
    clock.now += 10
    breaker = registry.get("a:1")
    assert breaker.allow()
    breaker.record_success()
    assert REGISTRY.get_sample_value("config_refresh_open_circuit_breakers") == 1
    assert registry.forget_missing(["a:1"]) == 1
    assert REGISTRY.get_sample_value("config_refresh_open_circuit_breakers") == 0


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        BreakerRegistry(failure_threshold=0)
