"""ConfigRoutes in memory: validated once, indexed by prefix, matched per event without touching the API.

A route's scopePattern is user input run against every parameter name, so it is compiled once, limited in
length, and smoke-tested in a child process for catastrophic backtracking under a time budget (Python's
`re` cannot be interrupted in-process). A route that fails is not indexed and says why in its status.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

from refresh_operator.waves import RolloutSpec, rollout_from_spec

MAX_PATTERN_LENGTH = 512
DEFAULT_RESYNC_SECONDS = 300
VERIFY_ANNOTATION = "configrefresh.io/verify-requested"
SMOKE_BUDGET_SECONDS = 2.0
_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Inputs that make backtracking-prone patterns such as (a+)+$ or (.*/)*x take exponential time.
# Adversarial names are tried both bare and under the route's own prefix: a pattern like
# "^/config-service/x/(?P<t>(a+)+)$" only backtracks once its literal start has matched.
_SMOKE_SCRIPT = r"""
import json, re, sys
given = json.loads(sys.stdin.read())
pattern = re.compile(given["pattern"])
starts = ["/", given["prefix"]]
pieces = ["a", "0", "/", "a/", "-", "_", "ab", ".", "A", " ", "a-", "/a"]
for piece in pieces:
    for tail in ("!", "\n", "/!", ""):
        for start in starts:
            pattern.search(start + piece * 28 + tail)
        pattern.search(piece * 2000 + tail)
"""


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


@dataclasses.dataclass(frozen=True)
class Route:
    namespace: str
    name: str
    uid: str
    generation: int
    prefix: str
    scope_pattern: re.Pattern[str] | None
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
        if not parameter_name.startswith(self.prefix):
            return None
        if self.scope_pattern is None:
            return {}
        found = self.scope_pattern.search(parameter_name)
        if found is None:
            return None
        return {key: value for key, value in found.groupdict().items() if value is not None}

    def query_for(self, scope: Mapping[str, str]) -> dict[str, str]:
        """Cloud Map query parameters with `{group}` placeholders filled from the scope."""
        result: dict[str, str] = {}
        for key, template in self.query_parameters.items():
            missing = [name for name in _TEMPLATE.findall(template) if name not in scope]
            if missing:
                raise RouteError("ScopeMissing", f"queryParameters.{key} needs scope group(s) {missing}")
            result[key] = _TEMPLATE.sub(lambda match: scope[match.group(1)], template)
        return result


def compile_scope_pattern(pattern: str) -> re.Pattern[str]:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RouteError(
            "InvalidScopePattern", f"scopePattern is longer than {MAX_PATTERN_LENGTH} characters"
        )
    try:
        return re.compile(pattern)
    except re.error as error:
        raise RouteError("InvalidScopePattern", f"scopePattern does not compile: {error}") from None


def smoke_test_pattern(pattern: str, *, prefix: str = "/", budget: float = SMOKE_BUDGET_SECONDS) -> None:
    """Raise RouteError if the pattern takes longer than `budget` on adversarial inputs. Blocking.

    The inputs include names under `prefix` (the route's parameterPrefix), since that is what the
    consumer will match against.
    """
    try:
        subprocess.run(
            [sys.executable, "-I", "-c", _SMOKE_SCRIPT],
            input=json.dumps({"pattern": pattern, "prefix": prefix}),
            text=True,
            timeout=budget,
            check=True,
            capture_output=True,
        )
    except subprocess.TimeoutExpired:
        raise RouteError(
            "UnsafeScopePattern",
            f"scopePattern took longer than {budget:g}s on adversarial names (catastrophic backtracking)",
        ) from None
    except subprocess.CalledProcessError as error:
        raise RouteError(
            "InvalidScopePattern", f"scopePattern failed its smoke test: {error.stderr[-200:]}"
        ) from None


def _get(mapping: Mapping[str, Any], *path: str) -> Any:
    current: Any = mapping
    for part in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def route_from_object(obj: Mapping[str, Any]) -> Route:
    """Validate a ConfigRoute object (as a dict) into a Route; raise RouteError. Pure: no smoke test."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    prefix = spec.get("parameterPrefix")
    if not isinstance(prefix, str) or not prefix.startswith("/") or prefix == "/":
        raise RouteError("InvalidPrefix", "spec.parameterPrefix must start with '/' and not be just '/'")
    raw_pattern = spec.get("scopePattern")
    pattern = compile_scope_pattern(raw_pattern) if raw_pattern else None
    cloud_map = _get(spec, "discovery", "cloudMap") or {}
    namespace = cloud_map.get("namespace")
    service = cloud_map.get("service")
    if not namespace or not service:
        raise RouteError("InvalidDiscovery", "spec.discovery.cloudMap.namespace and .service are required")
    query = {str(k): str(v) for k, v in (cloud_map.get("queryParameters") or {}).items()}
    groups = set(pattern.groupindex) if pattern is not None else set()
    for key, template in query.items():
        unknown = [name for name in _TEMPLATE.findall(template) if name not in groups]
        if unknown:
            raise RouteError(
                "InvalidQueryParameters",
                f"queryParameters.{key} uses {unknown}, which scopePattern does not capture",
            )
    refresh = spec.get("refresh") or {}
    interval = _get(spec, "resync", "intervalSeconds")
    tls = refresh.get("tls") or {}
    auth = refresh.get("auth") or {}
    return Route(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        generation=int(metadata.get("generation") or 0),
        prefix=prefix,
        scope_pattern=pattern,
        cloud_map_namespace=str(namespace),
        cloud_map_service=str(service),
        query_parameters=query,
        refresh=RefreshSpec(
            port=int(refresh["port"]) if refresh.get("port") else None,
            timeout_seconds=float(refresh.get("timeoutSeconds", 2)),
            max_concurrency=int(refresh.get("maxConcurrency", 64)),
            max_attempts=int(refresh.get("maxAttempts", 3)),
            deadline_seconds=float(refresh.get("deadlineSeconds", 300)),
            payload=str(refresh.get("payload", "value")),
            tls_enabled=bool(tls.get("enabled", False)),
            tls_server_name=tls.get("serverName") or None,
            auth_type=str(auth.get("type", "none")),
        ),
        resync_interval_seconds=DEFAULT_RESYNC_SECONDS if interval is None else max(0, int(interval)),
        created_at=str(metadata.get("creationTimestamp") or ""),
        verify_requested=str((metadata.get("annotations") or {}).get(VERIFY_ANNOTATION) or ""),
        rollout=rollout_from_spec(spec),
    )


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
