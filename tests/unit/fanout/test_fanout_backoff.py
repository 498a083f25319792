"""Backoff between attempts grows exponentially, is fully jittered, and never outlasts the deadline."""

from __future__ import annotations

import random
from itertools import islice

import pytest

from refresh_operator.fanout import backoff_bound, backoff_delays


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
