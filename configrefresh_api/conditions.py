"""Conditions in the Kubernetes shape (`type`, `status`, `reason`, `message`, `lastTransitionTime`,
`observedGeneration`), the one builder for both kinds.

`lastTransitionTime` moves only when a condition's status flips: a condition built with the `previous`
one of its type (or merged over the existing list) keeps the old time when the status did not change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from configrefresh_api.times import now_text

MAX_MESSAGE_LENGTH = 1024
"""Messages are cut to this many characters: a condition is read by people, not a log."""


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: str
    """"True", "False" or "Unknown"."""
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Condition:
        generation = body.get("observedGeneration")
        return cls(
            type=str(body.get("type", "")),
            status=str(body.get("status", "Unknown")),
            reason=str(body.get("reason", "")),
            message=str(body.get("message", "")),
            last_transition_time=str(body.get("lastTransitionTime", "")),
            observed_generation=int(generation) if generation is not None else None,
        )

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
        }
        if self.observed_generation is not None:
            body["observedGeneration"] = self.observed_generation
        return body

    @property
    def is_true(self) -> bool:
        return self.status == "True"


def condition(
    type_: str,
    *,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: str | None = None,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A condition body; `now` defaults to the current time, and `previous` (the condition of this type the
    object holds, if any) keeps its lastTransitionTime when the status is unchanged."""
    text = "True" if status else "False"
    transition = now or now_text()
    if previous is not None and previous.get("status") == text and previous.get("lastTransitionTime"):
        transition = str(previous["lastTransitionTime"])
    return Condition(
        type=type_,
        status=text,
        reason=reason,
        message=message[:MAX_MESSAGE_LENGTH],
        last_transition_time=transition,
        observed_generation=generation,
    ).to_body()


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> dict[str, Any] | None:
    """The condition of this type in a `status.conditions` list, if any."""
    for item in conditions:
        if item.get("type") == type_:
            return dict(item)
    return None


def merge_conditions(
    existing: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Replace conditions by type; keep lastTransitionTime when the status did not change."""
    result = {str(item.get("type")): dict(item) for item in existing}
    for item in new:
        fresh = dict(item)
        old = result.get(str(fresh["type"]))
        if old is not None and old.get("status") == fresh["status"]:
            fresh["lastTransitionTime"] = old.get("lastTransitionTime", fresh["lastTransitionTime"])
        result[str(fresh["type"])] = fresh
    return list(result.values())
