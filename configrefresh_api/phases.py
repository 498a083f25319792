"""The phases of a ConfigRefresh (`status.phase`), Halted included, and the triggers of its source."""

from __future__ import annotations

import enum


class Phase(enum.StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    PARTIALLY_FAILED = "PartiallyFailed"
    FAILED = "Failed"
    SUPERSEDED = "Superseded"
    HALTED = "Halted"
    """A progressive rollout stopped after a wave; it waits for `configctl rollout resume|abort`."""


PENDING = Phase.PENDING
IN_PROGRESS = Phase.IN_PROGRESS
SUCCEEDED = Phase.SUCCEEDED
PARTIALLY_FAILED = Phase.PARTIALLY_FAILED
FAILED = Phase.FAILED
SUPERSEDED = Phase.SUPERSEDED
HALTED = Phase.HALTED

TERMINAL_PHASES = frozenset({SUCCEEDED, PARTIALLY_FAILED, FAILED, SUPERSEDED})
"""Phases a rollout never leaves (Halted is not one: resume or abort moves it on)."""


class InstanceResult(enum.StrEnum):
    """`status.instances[].result`: how one instance ended in a rollout."""

    APPLIED = "Applied"
    STALE = "Stale"
    REJECTED = "Rejected"
    FAILED = "Failed"
    GONE = "Gone"
    """Every call failed and Cloud Map then no longer listed the instance as healthy: it left during the
    rollout (deregistered or unhealthy). Not a failure: it is counted in `status.gone`, not `failed`."""
    PENDING = "Pending"


NOT_FAILED_RESULTS = frozenset({InstanceResult.APPLIED, InstanceResult.STALE, InstanceResult.GONE})
"""Results that are not a failure of the instance (Rejected and Failed are; Pending is not finished)."""


class Trigger(enum.StrEnum):
    """`spec.source.trigger`: what made the ConfigRefresh."""

    EVENT = "event"
    MANUAL = "manual"
    RESYNC = "resync"
