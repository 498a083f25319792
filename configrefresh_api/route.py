"""ConfigRoute (short name `cfgroute`): which parameters go where, typed.

The spec mirrors the CRD: a field the object does not set is None here (the API server fills the CRD's
defaults on write, so objects read back carry them). Validation that needs more than the schema
(RE2 patterns, templates, the plaintext rule, the cluster admin's allowances) is the operator's job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from configrefresh_api import _fields
from configrefresh_api._fields import Field
from configrefresh_api.conditions import Condition
from configrefresh_api.groupversion import ROUTE_KIND
from configrefresh_api.matching import ScopePattern, compile_scope_pattern, scope_of
from configrefresh_api.objects import TypedObject


def _nested(kind: Any) -> Any:
    return kind.from_body


@dataclasses.dataclass(frozen=True)
class CloudMapDiscovery:
    """`spec.discovery.cloudMap`; queryParameters may hold `{group}` placeholders from the scope."""

    namespace: str
    service: str
    query_parameters: Mapping[str, str] | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CloudMapDiscovery:
        query = body.get("queryParameters")
        return cls(
            namespace=str(body.get("namespace", "")),
            service=str(body.get("service", "")),
            query_parameters=_fields.strings(query) if query is not None else None,
        )

    def to_body(self) -> dict[str, Any]:
        return _fields.write(self, _CLOUD_MAP_FIELDS)


_CLOUD_MAP_FIELDS: tuple[Field, ...] = (
    ("namespace", "namespace", str),
    ("service", "service", str),
    ("query_parameters", "queryParameters", _fields.strings),
)


@dataclasses.dataclass(frozen=True)
class HealthGate:
    url: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> HealthGate:
        return cls(url=str(body.get("url", "")))

    def to_body(self) -> dict[str, Any]:
        return {"url": self.url}


@dataclasses.dataclass(frozen=True)
class RolloutSettings(_fields.Mapped):
    """`spec.rollout`: progressive waves (cumulative sizes such as "1", "10%", "100%")."""

    waves: tuple[str, ...] = ()
    bake_seconds: int | None = None
    failure_threshold: float | None = None
    health_gate: HealthGate | None = None

    FIELDS: ClassVar[tuple[Field, ...]] = (
        ("waves", "waves", _fields.string_tuple),
        ("bake_seconds", "bakeSeconds", int),
        ("failure_threshold", "failureThreshold", float),
        ("health_gate", "healthGate", _nested(HealthGate)),
    )


@dataclasses.dataclass(frozen=True)
class ResyncSettings(_fields.Mapped):
    interval_seconds: int | None = None
    """How often missed events and lagging instances are sought (0 = never; CRD default 300)."""

    FIELDS: ClassVar[tuple[Field, ...]] = (("interval_seconds", "intervalSeconds", int),)


@dataclasses.dataclass(frozen=True)
class TlsSettings(_fields.Mapped):
    enabled: bool | None = None
    server_name: str | None = None
    ca_bundle: str | None = None
    """Base64 of PEM CA certificates, as the object holds it."""

    FIELDS: ClassVar[tuple[Field, ...]] = (
        ("enabled", "enabled", bool),
        ("server_name", "serverName", str),
        ("ca_bundle", "caBundle", str),
    )


@dataclasses.dataclass(frozen=True)
class AuthSettings(_fields.Mapped):
    type: str | None = None
    """none, bearerToken or serviceAccountToken."""
    audience: str | None = None

    FIELDS: ClassVar[tuple[Field, ...]] = (("type", "type", str), ("audience", "audience", str))


def _number(raw: Any) -> float | int:
    """Whole numbers stay int, so a body read and written back is unchanged."""
    number = float(raw)
    return int(number) if number.is_integer() and not isinstance(raw, float) else number


@dataclasses.dataclass(frozen=True)
class RefreshSettings(_fields.Mapped):
    """`spec.refresh`: how the route's instances are called."""

    port: int | None = None
    timeout_seconds: float | None = None
    max_concurrency: int | None = None
    max_attempts: int | None = None
    deadline_seconds: float | None = None
    payload: str | None = None
    """value or invalidate."""
    insecure_allow_plaintext: bool | None = None
    tls: TlsSettings | None = None
    auth: AuthSettings | None = None

    FIELDS: ClassVar[tuple[Field, ...]] = (
        ("port", "port", int),
        ("timeout_seconds", "timeoutSeconds", _number),
        ("max_concurrency", "maxConcurrency", int),
        ("max_attempts", "maxAttempts", int),
        ("deadline_seconds", "deadlineSeconds", _number),
        ("payload", "payload", str),
        ("insecure_allow_plaintext", "insecureAllowPlaintext", bool),
        ("tls", "tls", _nested(TlsSettings)),
        ("auth", "auth", _nested(AuthSettings)),
    )


@dataclasses.dataclass(frozen=True)
class PodSyncSettings:
    """`spec.podSync`: register the pods the selector matches in the route's Cloud Map service."""

    match_labels: Mapping[str, str]
    port: int
    attributes_from_labels: tuple[str, ...] | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodSyncSettings:
        attributes = body.get("attributesFromLabels")
        return cls(
            match_labels=_fields.strings((body.get("selector") or {}).get("matchLabels")),
            port=int(body.get("port") or 0),
            attributes_from_labels=_fields.string_tuple(attributes) if attributes is not None else None,
        )

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"selector": {"matchLabels": dict(self.match_labels)}, "port": self.port}
        if self.attributes_from_labels is not None:
            body["attributesFromLabels"] = list(self.attributes_from_labels)
        return body


@dataclasses.dataclass(frozen=True)
class ConfigRouteSpec:
    parameter_prefix: str
    discovery: CloudMapDiscovery
    scope_pattern: str | None = None
    rollout: RolloutSettings | None = None
    resync: ResyncSettings | None = None
    refresh: RefreshSettings | None = None
    pod_sync: PodSyncSettings | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ConfigRouteSpec:
        cloud_map = (body.get("discovery") or {}).get("cloudMap") or {}
        return cls(
            parameter_prefix=str(body.get("parameterPrefix", "")),
            discovery=CloudMapDiscovery.from_body(cloud_map),
            **_fields.read(body, _ROUTE_SPEC_FIELDS),
        )

    def to_body(self) -> dict[str, Any]:
        return {
            "parameterPrefix": self.parameter_prefix,
            "discovery": {"cloudMap": self.discovery.to_body()},
            **_fields.write(self, _ROUTE_SPEC_FIELDS),
        }

    def compiled_pattern(self) -> ScopePattern | None:
        """scopePattern compiled with RE2 (None without one); raises matching.ScopePatternError."""
        return compile_scope_pattern(self.scope_pattern) if self.scope_pattern else None

    def scope_of(self, parameter_name: str) -> dict[str, str] | None:
        """The scope if this route claims the parameter, else None (compiles the pattern on each call:
        hold a compiled pattern and use `matching.scope_of` to match many names)."""
        return scope_of(self.parameter_prefix, self.compiled_pattern(), parameter_name)


_ROUTE_SPEC_FIELDS: tuple[Field, ...] = (
    ("scope_pattern", "scopePattern", str),
    ("rollout", "rollout", _nested(RolloutSettings)),
    ("resync", "resync", _nested(ResyncSettings)),
    ("refresh", "refresh", _nested(RefreshSettings)),
    ("pod_sync", "podSync", _nested(PodSyncSettings)),
)


@dataclasses.dataclass(frozen=True)
class ResyncStatus(_fields.Mapped):
    last_pass_time: str | None = None
    parameters: int | None = None
    calls: int | None = None
    recovered: int | None = None
    repaired_instances: int | None = None
    verify_request: str | None = None
    error: str | None = None

    FIELDS: ClassVar[tuple[Field, ...]] = (
        ("last_pass_time", "lastPassTime", str),
        ("parameters", "parameters", int),
        ("calls", "calls", int),
        ("recovered", "recovered", int),
        ("repaired_instances", "repairedInstances", int),
        ("verify_request", "verifyRequest", str),
        ("error", "error", str),
    )


@dataclasses.dataclass(frozen=True)
class ConfigRouteStatus(_fields.Mapped):
    resync: ResyncStatus | None = None
    observed_generation: int | None = None
    registered: int | None = None
    """podSync: instances registered in Cloud Map."""
    healthy: int | None = None
    conditions: tuple[Condition, ...] | None = None
    """Ready (the operator core) and CloudMapSynced (podSync)."""

    FIELDS: ClassVar[tuple[Field, ...]] = (
        ("resync", "resync", _nested(ResyncStatus)),
        ("observed_generation", "observedGeneration", int),
        ("registered", "registered", int),
        ("healthy", "healthy", int),
        ("conditions", "conditions", lambda raw: tuple(Condition.from_body(item) for item in raw)),
    )


@dataclasses.dataclass(frozen=True)
class ConfigRoute(TypedObject[ConfigRouteSpec, ConfigRouteStatus]):
    KIND: ClassVar[str] = ROUTE_KIND

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ConfigRoute:
        return cls(*cls.read_parts(body, ConfigRouteSpec.from_body, ConfigRouteStatus.from_body))
