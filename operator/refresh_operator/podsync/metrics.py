"""podSync's Prometheus metrics (prefix ``config_refresh_podsync_``), on the default registry.

The operator core serves the default registry on its metrics port, so these appear there without wiring.
Labels are bounded: API names, action kinds, outcomes, reasons and route keys (namespace/name); never pod
names or attribute values.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CLOUDMAP_CALLS = Counter(
    "config_refresh_podsync_cloudmap_calls_total",
    "Cloud Map API calls made by podSync, by API and outcome (ok, throttled, error).",
    ["api", "outcome"],
)
CLOUDMAP_CALL_SECONDS = Histogram(
    "config_refresh_podsync_cloudmap_call_seconds",
    "Time of one podSync write to Cloud Map, including throttling backoff and waiting for the operation.",
    ["api"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ACTIONS = Counter(
    "config_refresh_podsync_actions_total",
    "Instance changes applied by podSync, by action (register, set_health, deregister), source (event, "
    "reconcile, release: a route stopped syncing) and outcome (ok, error).",
    ["action", "source", "outcome"],
)
RECONCILE_SECONDS = Histogram(
    "config_refresh_podsync_reconcile_seconds",
    "Duration of one periodic reconcile of a route.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ERRORS = Counter(
    "config_refresh_podsync_errors_total",
    "podSync failures surfaced on a route's CloudMapSynced condition, by reason.",
    ["reason"],
)
INSTANCES = Gauge(
    "config_refresh_podsync_instances",
    "Instances podSync keeps in a route's Cloud Map service, by route and state (registered, healthy).",
    ["route", "state"],
)
