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


class Trigger(enum.StrEnum):
    """`spec.source.trigger`: what made the ConfigRefresh."""

    EVENT = "event"
    MANUAL = "manual"
    RESYNC = "resync"
