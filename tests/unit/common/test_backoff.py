"""The one backoff (refresh_operator.backoff, and config_service's own): exponential bounds, full and equal
jitter, deterministic doubling, and never past a deadline."""

from __future__ import annotations

import random
from itertools import islice

import pytest

from config_service import backoff as service_backoff
from refresh_operator import fanout
from refresh_operator.backoff import (
    Backoff,
    backoff_bound,
    backoff_delays,
    doubling,
    equal_jitter,
    full_jitter,
)


@pytest.mark.parametrize(
    ("retry", "expected"),
    [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (50, 1.0), (10_000, 1.0)],
)
def test_bound_doubles_per_retry_up_to_the_cap(retry: int, expected: float) -> None:
    assert backoff_bound(retry, base_seconds=0.1, max_seconds=1.0) == pytest.approx(expected)


def test_retries_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_bound(0, base_seconds=0.1, max_seconds=1.0)


def test_every_delay_lies_between_zero_and_its_bound() -> None:
    rng = random.Random(7)
    for _ in range(200):
        for retry, delay in enumerate(
            islice(backoff_delays(base_seconds=0.1, max_seconds=2.0, remaining=lambda: 1e9, rng=rng), 8),
            start=1,
        ):
            assert 0.0 <= delay <= backoff_bound(retry, base_seconds=0.1, max_seconds=2.0)


def test_jitter_spreads_delays_over_the_whole_range() -> None:
    rng = random.Random(11)
    draws = [
        next(backoff_delays(base_seconds=0.0, max_seconds=8.0, remaining=lambda: 1e9, rng=rng))
        for _ in range(10)
    ]
    assert draws == [0.0] * 10  # a zero base means no waiting at all
    fourth = [
        list(islice(backoff_delays(base_seconds=1.0, max_seconds=8.0, remaining=lambda: 1e9, rng=rng), 4))[3]
        for _ in range(2000)
    ]
    # Full jitter: the 4th retry (bound 8 s) draws from all of [0, 8], not from a band near the bound.
    assert min(fourth) < 0.5
    assert max(fourth) > 7.5
    assert 3.5 < sum(fourth) / len(fourth) < 4.5


def test_delays_never_exceed_the_time_left_before_the_deadline() -> None:
    left = [5.0, 0.3, 0.05, 0.0, -1.0]
    delays = backoff_delays(
        base_seconds=10.0, max_seconds=10.0, remaining=lambda: left.pop(0), rng=random.Random(3)
    )
    produced = list(islice(delays, 5))
    assert produced[0] <= 5.0
    assert produced[1] <= 0.3
    assert produced[2] <= 0.05
    assert produced[3:] == [0.0, 0.0]


class Edge(random.Random):
    """Draws the low or the high end of every range."""

    def __init__(self, high: bool) -> None:
        super().__init__()
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def test_full_jitter_draws_from_zero_to_the_bound() -> None:
    highest = [full_jitter(n, base_seconds=0.1, max_seconds=2.0, rng=Edge(True)) for n in range(1, 9)]
    lowest = [full_jitter(n, base_seconds=0.1, max_seconds=2.0, rng=Edge(False)) for n in range(1, 9)]
    assert highest == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])
    assert lowest == [0.0] * 8


def test_a_backoff_policy_is_full_jitter() -> None:
    policy = Backoff(base_seconds=0.5, max_seconds=3.0)
    assert [policy.delay(n, rng=Edge(True)) for n in (1, 2, 3, 4)] == pytest.approx([0.5, 1.0, 2.0, 3.0])
    assert policy.delay(4, rng=Edge(False)) == 0.0
    assert Backoff(base_seconds=0.0, max_seconds=0.0).delay(5) == 0.0


def test_equal_jitter_never_waits_less_than_half_the_bound() -> None:
    assert equal_jitter(3, base_seconds=1.0, max_seconds=20.0, rng=Edge(False)) == pytest.approx(2.0)
    assert equal_jitter(3, base_seconds=1.0, max_seconds=20.0, rng=Edge(True)) == pytest.approx(4.0)
    assert equal_jitter(9, base_seconds=1.0, max_seconds=20.0, rng=Edge(True)) == pytest.approx(20.0)
    rng = random.Random(5)
    draws = [equal_jitter(2, base_seconds=1.0, max_seconds=20.0, rng=rng) for _ in range(500)]
    assert all(1.0 <= draw <= 2.0 for draw in draws)
    assert max(draws) - min(draws) > 0.9  # spread over the whole upper half


def test_delays_without_a_deadline_are_the_bare_draws() -> None:
    delays = list(islice(backoff_delays(base_seconds=1.0, max_seconds=4.0, rng=Edge(True)), 4))
    assert delays == pytest.approx([1.0, 2.0, 4.0, 4.0])


def test_doubling_is_deterministic_and_capped() -> None:
    assert list(islice(doubling(0.02, max_seconds=0.1), 5)) == pytest.approx([0.02, 0.04, 0.08, 0.1, 0.1])
    assert list(islice(doubling(5.0, max_seconds=1.0), 2)) == [1.0, 1.0]


def test_the_fan_out_uses_the_one_backoff() -> None:
    assert fanout.backoff_delays is backoff_delays
    assert fanout.backoff_bound is backoff_bound


def test_config_service_backoff_is_equal_jitter_under_the_same_bound() -> None:
    for attempt in range(1, 12):
        bound = backoff_bound(attempt, base_seconds=0.5, max_seconds=30.0)
        delay = service_backoff.equal_jitter(attempt, base_seconds=0.5, max_seconds=30.0)
        assert bound / 2 <= delay <= bound
    with pytest.raises(ValueError, match="from 1"):
        service_backoff.equal_jitter(0, base_seconds=0.5, max_seconds=30.0)
