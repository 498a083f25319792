"""A ConfigRefresh object read back (as the API package's typed ConfigRefresh) as a rollout: the fields
configctl shows and decides on.

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
from configrefresh_api.phases import (
    FAILED,
    HALTED,
    NOT_FAILED_RESULTS,
    PARTIALLY_FAILED,
    PENDING,
    TERMINAL_PHASES,
)
from configrefresh_api.refresh import ConfigRefresh, ConfigRefreshStatus

FINAL_PHASES = TERMINAL_PHASES | {HALTED}
"""Where a pipeline stops waiting: the operator's terminal phases, and Halted (it waits for a person)."""
FAILED_PHASES = frozenset({PARTIALLY_FAILED, FAILED, HALTED})
"""Halted (a progressive rollout stopped between waves) fails a --wait: a pipeline must not go on."""


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
    gone: int
    """Instances that left Cloud Map during the rollout (Gone): not failures, nothing left to refresh."""
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
        return self.refreshed + self.failed + self.gone

    @property
    def remaining(self) -> int:
        """The targets still there: the Gone ones have nothing left to refresh."""
        return self.targets - self.gone

    def failed_instances(self) -> tuple[InstanceResult, ...]:
        return tuple(i for i in self.instances if i.result not in NOT_FAILED_RESULTS)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["instances"] = [dataclasses.asdict(i) for i in self.instances]
        return data


def from_object(obj: dict[str, Any]) -> Rollout:
    refresh = ConfigRefresh.from_body(obj)
    metadata, spec = refresh.metadata, refresh.spec
    status = refresh.status or ConfigRefreshStatus()
    version = spec.parameter.version
    if version is None and metadata.labels.get(LABEL_VERSION, "").isdigit():
        version = int(metadata.labels[LABEL_VERSION])  # a deletion names no version; its label says 0
    return Rollout(
        object_name=metadata.name,
        route=spec.route or metadata.labels.get(LABEL_ROUTE, ""),
        parameter=metadata.annotations.get(ANNOTATION_PARAMETER_NAME) or spec.parameter.name,
        parameter_hash=metadata.labels.get(LABEL_PARAMETER_HASH, ""),
        version=version,
        trigger=str(spec.source.trigger),
        phase=str(status.phase or PENDING),
        targets=status.targets or 0,
        refreshed=status.refreshed or 0,
        failed=status.failed or 0,
        stale=status.stale or 0,
        gone=status.gone or 0,
        latency_ms=status.latency_ms,
        created=metadata.creation_timestamp,
        superseded_by=status.superseded_by or None,
        instances=tuple(
            InstanceResult(
                id=entry.id,
                address=entry.address or "",
                result=entry.result or "",
                version=entry.version,
                attempts=entry.attempts or 0,
                error=entry.error or "",
            )
            for entry in status.instances or ()
        ),
        instances_truncated=bool(status.instances_truncated),
    )


def newest_first(rollouts: list[Rollout]) -> list[Rollout]:
    return sorted(rollouts, key=lambda r: (r.created, r.version or 0, r.object_name), reverse=True)
