"""config-service's one backoff (it never imports the operator): equal jitter under an exponential bound.

Retry ``n`` (counting from 1) waits a uniform draw in ``[bound/2, bound]`` with ``bound = base * 2**(n-1)``
capped at ``max_seconds``: never less than half the bound, so a lone instance does not spin, and never in
step with the rest of a fleet that started together (bootstrap, Cloud Map self-registration).
"""

from __future__ import annotations

import random


def equal_jitter(attempt: int, *, base_seconds: float, max_seconds: float) -> float:
    """The delay before retry number ``attempt`` (1 = first retry)."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    bound = min(max_seconds, base_seconds * (2.0 ** min(attempt - 1, 62)))
    return bound / 2 + random.uniform(0.0, bound / 2)
