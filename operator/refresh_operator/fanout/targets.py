"""What a fan-out works on and what it reports: a target instance and the outcome of refreshing it.

These are plain frozen values so the operator's handlers can keep them in status, compare them across a
restart (``already_done``) and hand them between tasks without copying or locking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True)
class Target:
    """One instance to refresh, as Cloud Map (or a pod) describes it."""

    instance_id: str
    address: str
    """``host:port`` of the instance's RefreshService."""
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)


class Result(StrEnum):
    """The outcome of one target, spelled as in ``status.instances[].result``."""

    APPLIED = "Applied"
    STALE = "Stale"
    REJECTED = "Rejected"
    FAILED = "Failed"

    @property
    def acknowledged(self) -> bool:
        """True when the instance answered the refresh (it never needs to be called again)."""
        return self is not Result.FAILED


@dataclass(frozen=True)
class TargetOutcome:
    """How one target ended in one rollout.

    ``version`` is the version the instance reports holding after the call (0 when it never answered);
    ``attempts`` counts calls tried, including those refused at once by an open circuit breaker;
    ``error`` names the gRPC status code (or the local reason) of the last failure and never holds a value;
    ``acknowledged_at`` is the epoch time of the instance's answer, None when it never answered.
    """

    target: Target
    result: Result
    version: int
    attempts: int
    error: str | None
    acknowledged_at: float | None
