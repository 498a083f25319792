"""podSync's Prometheus metrics (prefix ``config_refresh_podsync_``), on the default registry.

The operator core serves the default registry on its metrics port, so these appear there without wiring.
The Cloud Map call metrics (``config_refresh_podsync_cloudmap_*``) live with the calls, in
``refresh_operator.cloudmap.client``. Labels are bounded: API names, action kinds, outcomes, reasons and
route keys (namespace/name); never pod names or attribute values.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
