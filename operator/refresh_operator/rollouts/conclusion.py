"""How a rollout that ran to the end is summed up: its phase, Ready condition, message and latency."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from refresh_operator import status
from refresh_operator.fanout import Result, Target, TargetOutcome
from refresh_operator.parameter_store import ParameterSnapshot


@dataclasses.dataclass(frozen=True)
class Conclusion:
    phase: str
    message: str
    conditions: list[dict[str, Any]]
    latency_seconds: float | None
    """Commit (the parameter's LastModifiedDate) to the last acknowledgment of this run, if any."""


def conclude(
    targets: Sequence[Target],
    outcomes: Mapping[str, TargetOutcome],
    snapshot: ParameterSnapshot,
    *,
    generation: int,
) -> Conclusion:
    """Succeeded (nothing failed), Failed (nothing refreshed) or PartiallyFailed, with the reason why."""
    counts = status.count(targets, outcomes)
    phase = status.final_phase(counts)
    acks = [
        o.acknowledged_at
        for o in outcomes.values()
        if o.acknowledged_at is not None and o.result.acknowledged
    ]
    latency = max(0.0, max(acks) - snapshot.last_modified.timestamp()) if acks else None
    left = f" ({counts.gone} left Cloud Map during the rollout)" if counts.gone else ""
    if phase == status.SUCCEEDED:
        held = f"{counts.refreshed}/{counts.targets - counts.gone}"
        message = f"{held} instances hold v{snapshot.version}{left}"
        ready = status.condition(
            "Ready", status=True, reason="Succeeded", message=message, generation=generation
        )
        return Conclusion(phase, message, [ready], latency)
    failed = status.failed_ids(targets, outcomes)
    first = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
    errors = {o.error for o in outcomes.values() if o.result is Result.FAILED and o.error}
    reason = "AllTargetsFailed" if phase == status.FAILED else "SomeTargetsFailed"
    message = f"{counts.failed}/{counts.targets} failed: {first}{left}"
    if phase == status.FAILED and errors:
        message += f" ({sorted(errors)[0][:200]})"
    ready = status.condition("Ready", status=False, reason=reason, message=message, generation=generation)
    return Conclusion(phase, message, [ready], latency)
