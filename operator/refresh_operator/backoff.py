"""The operator's one backoff: how long to wait before the next attempt, for every retry loop.

The bound before retry ``n`` (counting from 1) grows exponentially, ``base * 2**(n-1)``, up to a cap.
Two draws from it, as in the AWS Architecture Blog's "Exponential Backoff And Jitter":

- *full jitter*, uniform in ``[0, bound]``: spreads the retries of many callers that failed together
  (the fan-out's targets, podSync's pod events against a throttled Cloud Map), so a service that comes
  back is not hit by all of them in the same millisecond;
- *equal jitter*, uniform in ``[bound/2, bound]``: for a single loop that should not spin (the SQS
  consumer), still never in step with another replica.

``doubling`` is the deterministic variant for polling one thing (an operation's state, the API server at
start-up), where spreading callers does not matter.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator

_RNG = random.Random()


def backoff_bound(retry: int, *, base_seconds: float, max_seconds: float) -> float:
    """The upper bound of the delay before retry number ``retry`` (1 = first retry): ``base * 2**(retry-1)``
    capped at ``max_seconds``."""
    if retry < 1:
        raise ValueError(f"retry counts from 1, got {retry}")
    # Cap the exponent so huge retry counts do not overflow a float.
    return min(max_seconds, base_seconds * (2.0 ** min(retry - 1, 62)))


def full_jitter(
    retry: int, *, base_seconds: float, max_seconds: float, rng: random.Random | None = None
) -> float:
    """A uniform draw in ``[0, bound]`` for retry number ``retry``."""
    return (rng or _RNG).uniform(
        0.0, backoff_bound(retry, base_seconds=base_seconds, max_seconds=max_seconds)
    )


def equal_jitter(
    retry: int, *, base_seconds: float, max_seconds: float, rng: random.Random | None = None
) -> float:
    """A uniform draw in ``[bound/2, bound]`` for retry number ``retry``: never less than half the bound."""
    bound = backoff_bound(retry, base_seconds=base_seconds, max_seconds=max_seconds)
    return bound / 2 + (rng or _RNG).uniform(0.0, bound / 2)


def backoff_delays(
    *,
    base_seconds: float,
    max_seconds: float,
    remaining: Callable[[], float] | None = None,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield the full-jitter delay before each retry, forever, clipped to ``remaining()`` when given
    (seconds left before a deadline, read at each step, never negative). A caller that sees a delay equal to
    what remains knows the deadline comes first."""
    retry = 0
    while True:
        retry += 1
        delay = full_jitter(retry, base_seconds=base_seconds, max_seconds=max_seconds, rng=rng)
        yield delay if remaining is None else max(0.0, min(delay, remaining()))


def doubling(first_seconds: float, *, max_seconds: float) -> Iterator[float]:
    """``first``, ``2 * first``, … capped at ``max_seconds``, forever: no jitter."""
    delay = first_seconds
    while True:
        yield min(delay, max_seconds)
        delay = min(delay * 2, max_seconds)


@dataclasses.dataclass(frozen=True)
class Backoff:
    """A full-jitter policy to hand to a retrying client: ``delay(retry)`` for retry 1, 2, …"""

    base_seconds: float = 0.1
    max_seconds: float = 5.0

    def delay(self, retry: int, *, rng: random.Random | None = None) -> float:
        return full_jitter(retry, base_seconds=self.base_seconds, max_seconds=self.max_seconds, rng=rng)
