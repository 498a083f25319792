"""The typed objects a rollout works on: the ConfigRefresh being rolled out and the parameter it names."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping
from typing import Any

from refresh_operator.ordering import Operation, VersionKey, parse_time

EventPoster = Callable[[str, str, str], None]
"""(type "Normal"|"Warning", reason, message) → a Kubernetes Event on the object."""


class RetryLater(Exception):
    """A transient problem; the handler should be retried after `delay` seconds."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


@dataclasses.dataclass(frozen=True)
class SpecParameter:
    name: str
    version: int | None
    last_modified: datetime.datetime | None
    operation: Operation
    value_type: str

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SpecParameter:
        parameter = spec.get("parameter") or {}
        raw_version = parameter.get("version")
        raw_modified = parameter.get("lastModified")
        return cls(
            name=str(parameter.get("name", "")),
            version=int(raw_version) if raw_version is not None else None,
            last_modified=parse_time(str(raw_modified)) if raw_modified else None,
            operation=Operation(parameter.get("operation") or "Upsert"),
            value_type=str(parameter.get("type") or "String"),
        )

    @property
    def key(self) -> VersionKey | None:
        """The version this object names; None for a manual refresh of "whatever is current"."""
        if self.last_modified is None:
            return None
        if self.operation is Operation.DELETE:
            return VersionKey(self.last_modified, 0)
        if self.version is None:
            return None
        return VersionKey(self.last_modified, self.version)


@dataclasses.dataclass(frozen=True)
class ConfigRefreshSpec:
    """A ConfigRefresh's spec: which parameter version goes to which route's instances."""

    route: str
    parameter: SpecParameter
    scope: Mapping[str, str]
    trigger: str
    targets: frozenset[str] | None
    """Only these instance ids (a targeted repair), or None for every instance the route discovers."""

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ConfigRefreshSpec:
        only = frozenset(str(target) for target in spec.get("targets") or [])
        return cls(
            route=str(spec.get("route", "")),
            parameter=SpecParameter.from_spec(spec),
            scope={str(k): str(v) for k, v in (spec.get("scope") or {}).items()},
            trigger=str((spec.get("source") or {}).get("trigger") or "manual"),
            targets=only or None,
        )


@dataclasses.dataclass(frozen=True)
class Subject:
    """One ConfigRefresh object as the handler saw it: where it is, its status then, and its Events."""

    namespace: str
    name: str
    generation: int
    current: Mapping[str, Any]
    """`status` as it was when the handler started."""
    post_event: EventPoster

    @property
    def phase(self) -> str | None:
        phase = self.current.get("phase")
        return str(phase) if phase is not None else None
