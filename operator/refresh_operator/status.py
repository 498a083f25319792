"""ConfigRefresh status: counts, the capped instance list and the final phase, as plain dicts.

Counts are always exact; `instances[]` is capped (failures first, so the ones a person must look at are
never cut) with `instancesTruncated` saying so. These helpers are pure so the phase rules can be tested
without an API server; handlers.py sends what they return as merge patches to the /status subresource.
Phases, conditions and times are the API package's (`configrefresh_api`); the names imported here as
`status.X` are kept for the rollout code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from configrefresh_api.conditions import condition as condition
from configrefresh_api.conditions import merge_conditions as merge_conditions
from configrefresh_api.phases import FAILED as FAILED
from configrefresh_api.phases import IN_PROGRESS as IN_PROGRESS
from configrefresh_api.phases import PARTIALLY_FAILED as PARTIALLY_FAILED
from configrefresh_api.phases import PENDING as PENDING
from configrefresh_api.phases import SUCCEEDED as SUCCEEDED
from configrefresh_api.phases import SUPERSEDED as SUPERSEDED
from configrefresh_api.phases import TERMINAL_PHASES as TERMINAL_PHASES
from configrefresh_api.phases import Phase
from configrefresh_api.times import now_text as now_text
from refresh_operator.fanout import Result, Target, TargetOutcome

_ORDER = {
    Result.FAILED: 0,
    Result.REJECTED: 1,
    Result.GONE: 2,
    "Pending": 3,
    Result.STALE: 4,
    Result.APPLIED: 5,
}


@dataclasses.dataclass(frozen=True)
class Counts:
    targets: int
    refreshed: int
    failed: int
    stale: int
    pending: int
    gone: int = 0

    @property
    def progress(self) -> str:
        """Refreshed out of the targets that are still there (a Gone instance has nothing to hold)."""
        return f"{self.refreshed}/{self.targets - self.gone}"


def count(targets: Sequence[Target], outcomes: Mapping[str, TargetOutcome]) -> Counts:
    """`refreshed` = instances holding this version or newer (Applied or Stale); `stale` is the Stale part;
    `failed` = Failed or Rejected; `gone` = left Cloud Map during the rollout (Gone, not a failure);
    `pending` = not finished yet."""
    refreshed = failed = stale = gone = 0
    for target in targets:
        outcome = outcomes.get(target.instance_id)
        if outcome is None:
            continue
        if outcome.result in (Result.APPLIED, Result.STALE):
            refreshed += 1
            stale += outcome.result is Result.STALE
        elif outcome.result is Result.GONE:
            gone += 1
        else:
            failed += 1
    return Counts(
        targets=len(targets),
        refreshed=refreshed,
        failed=failed,
        stale=stale,
        pending=len(targets) - refreshed - failed - gone,
        gone=gone,
    )


def instance_entries(
    targets: Sequence[Target],
    outcomes: Mapping[str, TargetOutcome],
    *,
    cap: int,
) -> tuple[list[dict[str, Any]], bool]:
    """The capped `instances[]` list (failures first, then pending, stale, applied) and whether it was cut."""
    entries: list[dict[str, Any]] = []
    for target in targets:
        outcome = outcomes.get(target.instance_id)
        entry: dict[str, Any] = {"id": target.instance_id, "address": target.address}
        if outcome is None:
            entry.update(result="Pending", version=0, attempts=0)
        else:
            entry.update(result=str(outcome.result), version=outcome.version, attempts=outcome.attempts)
            if outcome.error:
                entry["error"] = outcome.error[:256]
        entries.append(entry)
    entries.sort(key=lambda entry: (_ORDER.get(entry["result"], 9), entry["id"]))
    return entries[:cap], len(entries) > cap


def final_phase(counts: Counts) -> Phase:
    """Succeeded when nothing failed (Gone instances are not failures), Failed when something failed and
    nothing was refreshed, PartiallyFailed otherwise."""
    if counts.targets == 0 or counts.failed == 0:
        return SUCCEEDED
    if counts.refreshed == 0:
        return FAILED
    return PARTIALLY_FAILED


def failed_ids(targets: Sequence[Target], outcomes: Mapping[str, TargetOutcome]) -> list[str]:
    """Ids of the targets that ended Failed or Rejected, sorted."""
    bad = (Result.FAILED, Result.REJECTED)
    return sorted(
        target.instance_id
        for target in targets
        if (outcome := outcomes.get(target.instance_id)) is not None and outcome.result in bad
    )


def outcomes_from_status(status: Mapping[str, Any], targets: Sequence[Target]) -> dict[str, TargetOutcome]:
    """Outcomes already recorded (acknowledged ones only) for a resumed rollout's `already_done`."""
    by_id = {target.instance_id: target for target in targets}
    done: dict[str, TargetOutcome] = {}
    for entry in status.get("instances") or []:
        target = by_id.get(str(entry.get("id")))
        result = entry.get("result")
        if target is None or result not in (Result.APPLIED, Result.STALE, Result.REJECTED):
            continue
        done[target.instance_id] = TargetOutcome(
            target=target,
            result=Result(result),
            version=int(entry.get("version") or 0),
            attempts=int(entry.get("attempts") or 0),
            error=entry.get("error"),
            acknowledged_at=None,
        )
    return done
