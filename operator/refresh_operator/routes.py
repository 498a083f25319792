"""ConfigRoutes in memory: validated once, indexed by prefix, matched per event without touching the API.

A route's scopePattern is user input run against every parameter name the consumer sees; the matching
rule (prefix, then an RE2 pattern, linear-time whatever the pattern) is the API package's
(`configrefresh_api.matching`), shared with configctl. Patterns RE2 cannot compile are refused with a
condition (reason InvalidScopePattern).

A route also says how its instances are called. The refresh channel never carries a bearer token in
clear: a route with TLS off whose auth sends a token is refused (reason PlaintextCredentials) unless it
sets the plainly named opt-out `spec.refresh.insecureAllowPlaintext`. SecureStrings on such a route are
pushed as `invalidate` (the instance re-reads them with its own IAM), never as a value.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import threading
from collections.abc import Mapping
from typing import Any, TypeVar

from configrefresh_api import matching
from configrefresh_api.labels import VERIFY_ANNOTATION, default_audience
from configrefresh_api.matching import ScopePattern, ScopePatternError
from configrefresh_api.route import AuthSettings, ConfigRoute, RefreshSettings, TlsSettings
from refresh_operator.waves import RolloutSpec, rollout_from_spec

MAX_CA_BUNDLE_BYTES = 64 * 1024
DEFAULT_RESYNC_SECONDS = 300
_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RouteError(ValueError):
    """A ConfigRoute cannot be used; `reason` is a condition reason, the message is for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class RefreshSpec:
    port: int | None
    timeout_seconds: float
    max_concurrency: int
    max_attempts: int
    deadline_seconds: float
    payload: str
    tls_enabled: bool
    tls_server_name: str | None
    auth_type: str
    audience: str = ""
    """The token audience for `auth.type: serviceAccountToken` (default: see `default_audience`)."""
    ca_bundle: bytes | None = None
    """PEM CA certificates from `tls.caBundle`, trusted beside the operator's own CA file."""
    insecure_allow_plaintext: bool = False
    """`spec.refresh.insecureAllowPlaintext`: tokens and SecureString values may travel in clear."""

    @property
    def sends_token(self) -> bool:
        return self.auth_type in ("bearerToken", "serviceAccountToken")

    @property
    def plaintext_allowed(self) -> bool:
        """Whether a token or a SecureString value may travel on this route's channel."""
        return self.tls_enabled or self.insecure_allow_plaintext

    @property
    def secure_strings_invalidated(self) -> bool:
        """SecureStrings are pushed as `invalidate` (never as a value) on a plaintext channel."""
        return self.payload == "value" and not self.plaintext_allowed


@dataclasses.dataclass(frozen=True)
class Route:
    namespace: str
    name: str
    uid: str
    generation: int
    prefix: str
    scope_pattern: ScopePattern | None
    cloud_map_namespace: str
    cloud_map_service: str
    query_parameters: Mapping[str, str]
    refresh: RefreshSpec
    resync_interval_seconds: int = DEFAULT_RESYNC_SECONDS
    """spec.resync.intervalSeconds: how often missed events and lagging instances are sought; 0 = never."""
    created_at: str = ""
    """metadata.creationTimestamp: parameters last written before it are not "missed events" of this route."""
    verify_requested: str = ""
    rollout: RolloutSpec | None = None
    """spec.rollout: progressive waves; None = every target at once."""
    """The value of the VERIFY_ANNOTATION (set by `configctl verify`): a change asks for a resync now."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def scope_of(self, parameter_name: str) -> dict[str, str] | None:
        """The named groups of scopePattern for this name; None if the route does not claim the name."""
        return matching.scope_of(self.prefix, self.scope_pattern, parameter_name)

    def query_for(self, scope: Mapping[str, str]) -> dict[str, str]:
        """Cloud Map query parameters with `{group}` placeholders filled from the scope."""
        result: dict[str, str] = {}
        for key, template in self.query_parameters.items():
            missing = [name for name in _TEMPLATE.findall(template) if name not in scope]
            if missing:
                raise RouteError("ScopeMissing", f"queryParameters.{key} needs scope group(s) {missing}")
            result[key] = _TEMPLATE.sub(lambda match: scope[match.group(1)], template)
        return result


def compile_scope_pattern(pattern: str) -> ScopePattern:
    """Compile with RE2 (linear-time matching); raise RouteError for what RE2 refuses."""
    try:
        return matching.compile_scope_pattern(pattern)
    except ScopePatternError as error:
        raise RouteError(error.reason, str(error)) from None


def decode_ca_bundle(raw: object) -> bytes | None:
    """`tls.caBundle` (base64 of PEM CA certificates) as PEM bytes; raise RouteError when malformed."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise RouteError("InvalidCABundle", "spec.refresh.tls.caBundle must be a base64 string")
    try:
        pem = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise RouteError("InvalidCABundle", "spec.refresh.tls.caBundle is not valid base64") from None
    if len(pem) > MAX_CA_BUNDLE_BYTES or b"-----BEGIN CERTIFICATE-----" not in pem:
        raise RouteError(
            "InvalidCABundle", "spec.refresh.tls.caBundle must hold PEM certificates (at most 64 KiB)"
        )
    return pem


def check_plaintext(refresh: RefreshSpec) -> None:
    """Raise RouteError(PlaintextCredentials) when the route would send a token over plaintext."""
    if refresh.sends_token and not refresh.plaintext_allowed:
        raise RouteError(
            "PlaintextCredentials",
            f"auth.type {refresh.auth_type} would send a bearer token in clear: set "
            "spec.refresh.tls.enabled (with serverName and caBundle), or, where the channel never leaves "
            "a trusted network, spec.refresh.insecureAllowPlaintext: true; with no token (auth.type: "
            "none) use payload: invalidate for secrets",
        )


def route_from_object(obj: Mapping[str, Any]) -> Route:
    """Validate a ConfigRoute object (as a dict) into a Route; raise RouteError. Pure: no API, no settings
    (the cluster admin's allowances are checked by `boundary.RoutingPolicy`). The CRD's defaults apply to
    what the object leaves unset."""
    typed = ConfigRoute.from_body(obj)
    metadata, spec = typed.metadata, typed.spec
    prefix = spec.parameter_prefix
    if not prefix.startswith("/") or prefix == "/":
        raise RouteError("InvalidPrefix", "spec.parameterPrefix must start with '/' and not be just '/'")
    pattern = compile_scope_pattern(spec.scope_pattern) if spec.scope_pattern else None
    namespace, service = spec.discovery.namespace, spec.discovery.service
    if not namespace or not service:
        raise RouteError("InvalidDiscovery", "spec.discovery.cloudMap.namespace and .service are required")
    query = dict(spec.discovery.query_parameters or {})
    groups = set(pattern.groupindex) if pattern is not None else set()
    for key, template in query.items():
        unknown = [name for name in _TEMPLATE.findall(template) if name not in groups]
        if unknown:
            raise RouteError(
                "InvalidQueryParameters",
                f"queryParameters.{key} uses {unknown}, which scopePattern does not capture",
            )
    refresh = spec.refresh or RefreshSettings()
    tls = refresh.tls or TlsSettings()
    auth = refresh.auth or AuthSettings()
    tls_enabled = bool(tls.enabled)
    ca_bundle = decode_ca_bundle(tls.ca_bundle)
    if ca_bundle is not None and not tls_enabled:
        raise RouteError("InvalidCABundle", "spec.refresh.tls.caBundle needs tls.enabled: true")
    refresh_spec = RefreshSpec(
        port=refresh.port or None,
        timeout_seconds=float(_default(refresh.timeout_seconds, 2)),
        max_concurrency=_default(refresh.max_concurrency, 64),
        max_attempts=_default(refresh.max_attempts, 3),
        deadline_seconds=float(_default(refresh.deadline_seconds, 300)),
        payload=_default(refresh.payload, "value"),
        tls_enabled=tls_enabled,
        tls_server_name=tls.server_name or None,
        auth_type=_default(auth.type, "none"),
        audience=auth.audience or default_audience(namespace, service),
        ca_bundle=ca_bundle,
        insecure_allow_plaintext=bool(refresh.insecure_allow_plaintext),
    )
    check_plaintext(refresh_spec)
    interval = spec.resync.interval_seconds if spec.resync is not None else None
    return Route(
        namespace=metadata.namespace,
        name=metadata.name,
        uid=metadata.uid,
        generation=metadata.generation or 0,
        prefix=prefix,
        scope_pattern=pattern,
        cloud_map_namespace=namespace,
        cloud_map_service=service,
        query_parameters=query,
        refresh=refresh_spec,
        resync_interval_seconds=DEFAULT_RESYNC_SECONDS if interval is None else max(0, interval),
        created_at=metadata.creation_timestamp,
        verify_requested=metadata.annotations.get(VERIFY_ANNOTATION, ""),
        rollout=rollout_from_spec(obj.get("spec") or {}),
    )


T = TypeVar("T")


def _default(value: T | None, default: T) -> T:
    """The CRD's default for a field the object leaves unset (the API server fills them on write)."""
    return default if value is None else value


class RouteIndex:
    """Routes by prefix. Written by the kopf handlers, read by the consumer; both on one loop, but the
    lock keeps it safe if a thread ever reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], Route] = {}

    def upsert(self, route: Route) -> None:
        with self._lock:
            self._routes[route.key] = route

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._routes.pop((namespace, name), None)

    def get(self, namespace: str, name: str) -> Route | None:
        with self._lock:
            return self._routes.get((namespace, name))

    def __len__(self) -> int:
        with self._lock:
            return len(self._routes)

    def all(self) -> list[Route]:
        with self._lock:
            return list(self._routes.values())

    def match(self, parameter_name: str) -> list[tuple[Route, dict[str, str]]]:
        """Every route claiming the name (prefix and scopePattern), with its scope; longest prefix first."""
        with self._lock:
            routes = list(self._routes.values())
        matches = []
        for route in routes:
            scope = route.scope_of(parameter_name)
            if scope is not None:
                matches.append((route, scope))
        matches.sort(key=lambda pair: (-len(pair[0].prefix), pair[0].namespace, pair[0].name))
        return matches
