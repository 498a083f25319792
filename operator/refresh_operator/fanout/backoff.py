"""Delays between attempts: exponential growth with full jitter, never past the rollout's deadline.

Full jitter (a uniform draw between 0 and the exponential bound, as in the AWS Architecture Blog's
"Exponential Backoff And Jitter") spreads the retries of many targets that failed together, so an
instance that comes back is not hit by the whole fleet's retries in the same millisecond.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

_DEFAULT_RNG = random.Random()


def backoff_bound(retry: int, *, base_seconds: float, max_seconds: float) -> float:
    """The upper bound of the delay before retry number ``retry`` (1 = first retry): ``base * 2**(retry-1)``
    capped at ``max_seconds``."""
    if retry < 1:
        raise ValueError(f"retry counts from 1, got {retry}")
    # Cap the exponent so huge retry counts do not overflow a float.
    return min(max_seconds, base_seconds * (2.0 ** min(retry - 1, 62)))


def backoff_delays(
    *,
    base_seconds: float,
    max_seconds: float,
    remaining: Callable[[], float],
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield the delay before each retry, forever: a uniform draw in ``[0, bound]`` for the retry's bound,
    then clipped to ``remaining()`` (seconds left before the rollout's deadline, read at each step, never
    negative). A caller that sees a delay equal to what remains knows the deadline comes first."""
    draw = rng or _DEFAULT_RNG
    retry = 0
    while True:
        retry += 1
        delay = draw.uniform(0.0, backoff_bound(retry, base_seconds=base_seconds, max_seconds=max_seconds))
        yield max(0.0, min(delay, remaining()))
