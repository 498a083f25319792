"""Prometheus metrics of the consumer and the rollouts, served with the fan-out's on one port.

Labels are closed sets (an outcome, a phase, an API name): never a parameter name, an instance or a value.
The fan-out package registers its own (instance refreshes by result, fan-out duration, open breakers) in
the same default registry.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

from config_service.version import build_labels

BUILD_INFO = Info("config_refresh_build", "The running operator.")
"""config_refresh_build_info{version, python} 1: which release each replica runs."""
BUILD_INFO.info(build_labels())

EVENTS_RECEIVED = Counter(
    "config_refresh_events_received_total",
    "SQS messages handled by the consumer, by outcome (created, duplicate, coalesced, unrouted, invalid, "
    "error).",
    ["outcome"],
)
ROLLOUTS = Counter(
    "config_refresh_rollouts_total",
    "ConfigRefresh rollouts finished, by final phase.",
    ["phase"],
)
STALE_RUNS_SKIPPED = Counter(
    "config_refresh_rollout_stale_runs_skipped_total",
    "Rollout handler runs skipped because this process had already ended (or halted) that rollout: kopf "
    "handed over a copy of the object from before its final status (an operator behind on its watch).",
)
ROLLOUT_DURATION = Histogram(
    "config_refresh_rollout_duration_seconds",
    "Time from a rollout's start (handler) to its final status.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
COMMIT_TO_APPLIED = Histogram(
    "config_refresh_commit_to_applied_seconds",
    "Time from the parameter's LastModifiedDate to the last instance acknowledgment of its rollout.",
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
PARAMETER_STORE_CALLS = Counter(
    "config_refresh_parameter_store_calls_total",
    "Parameter Store API calls made by the operator, by API and outcome (ok, not_found, error).",
    ["api", "outcome"],
)
SQS_MESSAGES_RECEIVED = Counter(
    "config_refresh_sqs_messages_received_total",
    "Messages ReceiveMessage returned (before validation, routing and coalescing): the delivery rate.",
)
CONSUMER_MESSAGES_HELD = Gauge(
    "config_refresh_consumer_messages_held",
    "SQS messages the consumer holds (received, not yet deleted or left on the queue); at most "
    "max_held_messages.",
)
CONSUMER_BACKPRESSURE_SECONDS = Counter(
    "config_refresh_consumer_backpressure_seconds_total",
    "Time the receive loop paused because max_held_messages messages were held (the rest waited in SQS).",
)
SQS_RECEIVE_ERRORS = Counter(
    "config_refresh_sqs_receive_errors_total",
    "Failed SQS ReceiveMessage calls (the loop backs off and continues).",
)
SQS_DELETE_ERRORS = Counter(
    "config_refresh_sqs_delete_errors_total",
    "Failed SQS DeleteMessage calls (the message comes back after its visibility timeout).",
)
KUBE_API_ERRORS = Counter(
    "config_refresh_kube_api_errors_total",
    "Failed Kubernetes API calls made by the operator itself, by operation.",
    ["operation"],
)

RESYNC_RECOVERED = Counter(
    "config_refresh_resync_recovered_total",
    "Changes found by the periodic resync that had no ConfigRefresh: a non-zero value means change events "
    "were lost (or delayed beyond the grace period) upstream.",
)
RESYNC_REPAIRED_INSTANCES = Counter(
    "config_refresh_resync_repaired_instances_total",
    "Instances found behind the newest version of a parameter by anti-entropy and sent a targeted refresh.",
)
RESYNC_PASSES = Counter(
    "config_refresh_resync_passes_total",
    "Resync passes of a route, by outcome (ok, error).",
    ["outcome"],
)
BACKGROUND_PASSES_SKIPPED = Counter(
    "config_refresh_background_passes_skipped_total",
    "Passes of a background loop (resync: one per route that fell due; retention: one per sweep) skipped "
    "because this replica is a standby of the kopf peering.",
    ["loop"],
)


def serve(*, address: str, port: int) -> None:
    """Start the metrics HTTP server on a daemon thread; port 0 disables it."""
    if port:
        start_http_server(port, addr=address)
