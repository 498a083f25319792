"""A ConfigRefresh object read back as a rollout: the fields configctl shows and decides on.

ConfigRefresh objects never contain parameter values (the operator keeps them out), so nothing here
needs masking; the parameter name comes from the `configrefresh.io/parameter-name` annotation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from configrefresh_api.labels import (
    ANNOTATION_PARAMETER_NAME,
    LABEL_PARAMETER_HASH,
    LABEL_ROUTE,
    LABEL_VERSION,
)
from configrefresh_api.phases import FAILED, HALTED, PARTIALLY_FAILED, TERMINAL_PHASES

FINAL_PHASES = TERMINAL_PHASES | {HALTED}
"""Where a pipeline stops waiting: the operator's terminal phases, and Halted (it waits for a person)."""
FAILED_PHASES = frozenset({PARTIALLY_FAILED, FAILED, HALTED})
"""Halted (a progressive rollout stopped between waves) fails a --wait: a pipeline must not go on."""
_OK_RESULTS = frozenset({"Applied", "Stale"})


@dataclasses.dataclass(frozen=True)
class InstanceResult:
    id: str
    address: str
    result: str
    version: int | None
    attempts: int
    error: str


@dataclasses.dataclass(frozen=True)
class Rollout:
    object_name: str
    route: str
    parameter: str
    parameter_hash: str
    version: int | None
    trigger: str
    phase: str
    targets: int
    refreshed: int
    failed: int
    stale: int
    latency_ms: int | None
    created: str
    superseded_by: str | None
    instances: tuple[InstanceResult, ...]
    instances_truncated: bool

    @property
    def final(self) -> bool:
        return self.phase in FINAL_PHASES

    @property
    def done_count(self) -> int:
        """Instances finished either way (`refreshed` already includes the Stale ones)."""
        return self.refreshed + self.failed

    def failed_instances(self) -> tuple[InstanceResult, ...]:
        return tuple(i for i in self.instances if i.result not in _OK_RESULTS)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["instances"] = [dataclasses.asdict(i) for i in self.instances]
        return data


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _opt_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def from_object(obj: dict[str, Any]) -> Rollout:
    metadata = obj.get("metadata", {})
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    parameter = spec.get("parameter") or {}
    instances = tuple(
        InstanceResult(
            id=str(i.get("id", "")),
            address=str(i.get("address", "")),
            result=str(i.get("result", "")),
            version=_opt_int(i.get("version")),
            attempts=_int(i.get("attempts")),
            error=str(i.get("error") or ""),
        )
        for i in status.get("instances") or []
    )
    return Rollout(
        object_name=str(metadata.get("name", "")),
        route=str(spec.get("route") or labels.get(LABEL_ROUTE, "")),
        parameter=str(annotations.get(ANNOTATION_PARAMETER_NAME) or parameter.get("name", "")),
        parameter_hash=str(labels.get(LABEL_PARAMETER_HASH, "")),
        version=_opt_int(parameter.get("version", labels.get(LABEL_VERSION))),
        trigger=str((spec.get("source") or {}).get("trigger", "")),
        phase=str(status.get("phase") or "Pending"),
        targets=_int(status.get("targets")),
        refreshed=_int(status.get("refreshed")),
        failed=_int(status.get("failed")),
        stale=_int(status.get("stale")),
        latency_ms=_opt_int(status.get("latencyMs")),
        created=str(metadata.get("creationTimestamp", "")),
        superseded_by=status.get("supersededBy") or None,
        instances=instances,
        instances_truncated=bool(status.get("instancesTruncated")),
    )


def newest_first(rollouts: list[Rollout]) -> list[Rollout]:
    return sorted(rollouts, key=lambda r: (r.created, r.version or 0, r.object_name), reverse=True)
