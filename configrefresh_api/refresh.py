"""ConfigRefresh (short name `cfgr`): one rollout of one parameter version, typed.

`new_refresh` is the one builder of a new ConfigRefresh: the operator's recorder (consumer, supersession,
resync, anti-entropy) and `configctl refresh` all create objects through it, so names, labels, the
annotation and the time format cannot drift apart. The value of a parameter never appears in the object.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from configrefresh_api import _fields
from configrefresh_api._fields import Field
from configrefresh_api.conditions import Condition
from configrefresh_api.groupversion import API_VERSION, REFRESH_KIND, ROUTE_KIND
from configrefresh_api.labels import (
    ANNOTATION_PARAMETER_NAME,
    LABEL_PARAMETER_HASH,
    LABEL_ROUTE,
    LABEL_VERSION,
)
from configrefresh_api.meta import ObjectMeta, OwnerReference
from configrefresh_api.naming import label_value, parameter_hash, refresh_name
from configrefresh_api.objects import TypedObject
from configrefresh_api.phases import TERMINAL_PHASES, Phase, Trigger
from configrefresh_api.times import canonical_time, parse_time
from configrefresh_api.versions import Operation, VersionKey


@dataclasses.dataclass(frozen=True)
class ParameterRef:
    """`spec.parameter`: which parameter, and which version of it (none of its value)."""

    name: str
    version: int | None = None
    """None for a deletion (the CRD requires >= 1), and for a manual refresh of "whatever is current"."""
    last_modified: datetime.datetime | None = None
    operation: Operation = Operation.UPSERT
    value_type: str = "String"

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

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ParameterRef:
        version = body.get("version")
        modified = body.get("lastModified")
        return cls(
            name=str(body.get("name", "")),
            version=int(version) if version is not None else None,
            last_modified=parse_time(str(modified)) if modified else None,
            operation=Operation(body.get("operation") or Operation.UPSERT),
            value_type=str(body.get("type") or "String"),
        )

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name}
        if self.version is not None:
            body["version"] = self.version
        if self.last_modified is not None:
            body["lastModified"] = canonical_time(self.last_modified)
        body["operation"] = str(self.operation)
        body["type"] = self.value_type
        return body


@dataclasses.dataclass(frozen=True)
class Source:
    """`spec.source`: what made the object (an event, a person, the resync)."""

    trigger: Trigger = Trigger.MANUAL
    event_id: str | None = None
    event_time: datetime.datetime | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any] | None) -> Source:
        body = body or {}
        event_time = body.get("eventTime")
        return cls(
            trigger=Trigger(body.get("trigger") or Trigger.MANUAL),
            event_id=str(body["eventId"]) if body.get("eventId") else None,
            event_time=parse_time(str(event_time)) if event_time else None,
        )

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"trigger": str(self.trigger)}
        if self.event_id is not None:
            body["eventId"] = self.event_id
        if self.event_time is not None:
            body["eventTime"] = canonical_time(self.event_time)
        return body


@dataclasses.dataclass(frozen=True)
class ConfigRefreshSpec:
    route: str
    parameter: ParameterRef
    scope: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The route's scopePattern groups for this parameter."""
    source: Source = Source()
    targets: tuple[str, ...] = ()
    """A targeted repair (anti-entropy): only these instance ids; empty = every instance."""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ConfigRefreshSpec:
        return cls(
            route=str(body.get("route", "")),
            parameter=ParameterRef.from_body(body.get("parameter") or {}),
            scope=_fields.strings(body.get("scope")),
            source=Source.from_body(body.get("source")),
            targets=_fields.string_tuple(body.get("targets")),
        )

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "route": self.route,
            "parameter": self.parameter.to_body(),
            "scope": dict(self.scope),
            "source": self.source.to_body(),
        }
        if self.targets:
            body["targets"] = list(self.targets)
        return body


@dataclasses.dataclass(frozen=True)
class InstanceStatus:
    """One entry of `status.instances[]` (the capped list, failures first)."""

    id: str
    address: str | None = None
    result: str | None = None
    """Applied, Stale, Rejected, Failed, Gone (left Cloud Map during the rollout) or Pending."""
    version: int | None = None
    attempts: int | None = None
    error: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> InstanceStatus:
        return cls(id=str(body.get("id", "")), **_fields.read(body, _INSTANCE_FIELDS))

    def to_body(self) -> dict[str, Any]:
        return {"id": self.id, **_fields.write(self, _INSTANCE_FIELDS)}


_INSTANCE_FIELDS: tuple[Field, ...] = (
    ("address", "address", str),
    ("result", "result", str),
    ("version", "version", int),
    ("attempts", "attempts", int),
    ("error", "error", str),
)


def _conditions(raw: Any) -> tuple[Condition, ...]:
    return tuple(Condition.from_body(item) for item in raw or ())


@dataclasses.dataclass(frozen=True)
class ConfigRefreshStatus(_fields.Mapped):
    """`status`; times are kept as the RFC 3339 text the object holds."""

    phase: Phase | None = None
    waves: tuple[int, ...] | None = None
    current_wave: int | None = None
    targets: int | None = None
    refreshed: int | None = None
    failed: int | None = None
    stale: int | None = None
    gone: int | None = None
    """Instances that left Cloud Map during the rollout (result Gone, not failures)."""
    progress: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    latency_ms: int | None = None
    instances: tuple[InstanceStatus, ...] | None = None
    instances_truncated: bool | None = None
    superseded_by: str | None = None
    observed_generation: int | None = None
    conditions: tuple[Condition, ...] | None = None

    FIELDS: ClassVar[tuple[Field, ...]] = (
        ("phase", "phase", Phase),
        ("waves", "waves", lambda raw: tuple(int(item) for item in raw)),
        ("current_wave", "currentWave", int),
        ("targets", "targets", int),
        ("refreshed", "refreshed", int),
        ("failed", "failed", int),
        ("stale", "stale", int),
        ("gone", "gone", int),
        ("progress", "progress", str),
        ("started_at", "startedAt", str),
        ("completed_at", "completedAt", str),
        ("latency_ms", "latencyMs", int),
        ("instances", "instances", lambda raw: tuple(InstanceStatus.from_body(item) for item in raw)),
        ("instances_truncated", "instancesTruncated", bool),
        ("superseded_by", "supersededBy", str),
        ("observed_generation", "observedGeneration", int),
        ("conditions", "conditions", _conditions),
    )

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


@dataclasses.dataclass(frozen=True)
class ConfigRefresh(TypedObject[ConfigRefreshSpec, ConfigRefreshStatus]):
    KIND: ClassVar[str] = REFRESH_KIND

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ConfigRefresh:
        return cls(*cls.read_parts(body, ConfigRefreshSpec.from_body, ConfigRefreshStatus.from_body))


def new_refresh(
    *,
    namespace: str,
    route: str,
    parameter: ParameterRef,
    scope: Mapping[str, str],
    source: Source,
    route_uid: str = "",
    targets: Sequence[str] = (),
    name: str | None = None,
) -> ConfigRefresh:
    """A new ConfigRefresh (no status) of `parameter` on `route`.

    The name defaults to the deterministic `refresh_name` of (route, parameter, version, lastModified), so
    duplicate deliveries and competing replicas converge on one object; anti-entropy's repairs and
    `configctl refresh` pass a name of their own. With the route's uid the route owns the object
    (Kubernetes' garbage collector deletes it with the route)."""
    version = parameter.version or 0
    if name is None:
        if parameter.last_modified is None:
            raise ValueError("a ConfigRefresh without lastModified needs a name")
        name = refresh_name(
            route=route, parameter_name=parameter.name, version=version, last_modified=parameter.last_modified
        )
    owners = (OwnerReference(api_version=API_VERSION, kind=ROUTE_KIND, name=route, uid=route_uid),)
    return ConfigRefresh(
        metadata=ObjectMeta(
            name=name,
            namespace=namespace,
            labels={
                LABEL_ROUTE: label_value(route),
                LABEL_PARAMETER_HASH: parameter_hash(parameter.name),
                LABEL_VERSION: str(version),
            },
            annotations={ANNOTATION_PARAMETER_NAME: parameter.name},
            owner_references=owners if route_uid else (),
        ),
        spec=ConfigRefreshSpec(
            route=route, parameter=parameter, scope=dict(scope), source=source, targets=tuple(targets)
        ),
    )
