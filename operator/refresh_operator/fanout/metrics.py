"""Prometheus metrics of the fan-out, registered once at import in the default registry.

The operator's metrics endpoint serves the default registry, so these appear beside the consumer's and
handlers' metrics. Labels are closed sets (a result, a gRPC code): never an instance id, an address or a
parameter name, which would grow without bound, and never a value.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INSTANCE_REFRESHES = Counter(
    "config_refresh_instance_refreshes_total",
    "Targets a rollout's waves called, by settled result (Applied, Stale, Rejected, Failed, Gone); "
    "Gone: failed, then found gone from Cloud Map (not counted under Failed).",
    ["result"],
)

REFRESH_ATTEMPTS = Counter(
    "config_refresh_refresh_attempts_total",
    "Refresh calls tried, by outcome code (OK, a gRPC status code name, or CIRCUIT_OPEN).",
    ["code"],
)

FANOUT_DURATION = Histogram(
    "config_refresh_fanout_duration_seconds",
    "Time from the start of a fan-out to its last target finishing.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)

OPEN_BREAKERS = Gauge(
    "config_refresh_open_circuit_breakers",
    "Endpoints whose circuit breaker is open or half-open.",
)


def count_outcome(result: str) -> None:
    """Count one finished target (label children are cached: this runs once per target)."""
    child = _OUTCOME_CHILDREN.get(result)
    if child is None:
        child = _OUTCOME_CHILDREN[result] = INSTANCE_REFRESHES.labels(result=result)
    child.inc()


def count_attempt(code: str) -> None:
    """Count one Refresh attempt by its outcome code."""
    child = _ATTEMPT_CHILDREN.get(code)
    if child is None:
        child = _ATTEMPT_CHILDREN[code] = REFRESH_ATTEMPTS.labels(code=code)
    child.inc()


_OUTCOME_CHILDREN: dict[str, Counter] = {}
_ATTEMPT_CHILDREN: dict[str, Counter] = {}
