"""ConfigRefresh status: counts, the capped instance list, the phase and conditions, as plain dicts.

Counts are always exact; `instances[]` is capped (failures first, so the ones a person must look at are
never cut) with `instancesTruncated` saying so. These helpers are pure so the phase rules can be tested
without an API server; handlers.py sends what they return as merge patches to the /status subresource.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from refresh_operator.fanout import Result, Target, TargetOutcome
from refresh_operator.ordering import canonical_time

PENDING = "Pending"
IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
PARTIALLY_FAILED = "PartiallyFailed"
FAILED = "Failed"
SUPERSEDED = "Superseded"
TERMINAL_PHASES = frozenset({SUCCEEDED, PARTIALLY_FAILED, FAILED, SUPERSEDED})

_ORDER = {Result.FAILED: 0, Result.REJECTED: 1, "Pending": 2, Result.STALE: 3, Result.APPLIED: 4}


def now_text() -> str:
    return canonical_time(datetime.datetime.now(datetime.UTC)).replace(".000000Z", "Z")


@dataclasses.dataclass(frozen=True)
class Counts:
    targets: int
    refreshed: int
    failed: int
    stale: int
    pending: int

    @property
    def progress(self) -> str:
        return f"{self.refreshed}/{self.targets}"


def count(targets: Sequence[Target], outcomes: Mapping[str, TargetOutcome]) -> Counts:
    """`refreshed` = instances holding this version or newer (Applied or Stale); `stale` is the Stale part;
    `failed` = Failed or Rejected; `pending` = not finished yet."""
    refreshed = failed = stale = 0
    for target in targets:
        outcome = outcomes.get(target.instance_id)
        if outcome is None:
            continue
        if outcome.result in (Result.APPLIED, Result.STALE):
            refreshed += 1
            stale += outcome.result is Result.STALE
        else:
            failed += 1
    return Counts(
        targets=len(targets),
        refreshed=refreshed,
        failed=failed,
        stale=stale,
        pending=len(targets) - refreshed - failed,
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


def final_phase(counts: Counts) -> str:
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


def condition(
    type_: str,
    *,
    status: bool,
    reason: str,
    message: str,
    generation: int,
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": now_text(),
        "observedGeneration": generation,
    }


def merge_conditions(
    existing: Iterable[Mapping[str, Any]], new: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Replace conditions by type; keep lastTransitionTime when the status did not change."""
    result = {str(item.get("type")): dict(item) for item in existing}
    for item in new:
        old = result.get(item["type"])
        if old is not None and old.get("status") == item["status"]:
            item = {**item, "lastTransitionTime": old.get("lastTransitionTime", item["lastTransitionTime"])}
        result[item["type"]] = item
    return list(result.values())


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
