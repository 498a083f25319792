"""Prometheus metrics, on their own port and their own registry.

Why a registry per instance: tests and embedding applications may run several services in one process,
and the default global registry would refuse the second set of names. Gauges that describe the cache
(entries, age of the oldest entry) are computed at scrape time from the current snapshot, so the hot
read path only observes one histogram. Labels carry results and outcomes only: never a parameter value,
and never a parameter name (unbounded cardinality, and names can be sensitive too).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from config_service.cache import ConfigCache, utcnow
from config_service.version import build_labels

_LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)


class _CacheCollector(Collector):
    def __init__(self, cache: ConfigCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self._cache.snapshot
        live = [entry for entry in snapshot if not entry.deleted]
        entries = GaugeMetricFamily(
            "config_service_cache_entries", "Parameters held, by state.", labels=["state"]
        )
        entries.add_metric(["live"], len(live))
        entries.add_metric(["tombstone"], len(snapshot) - len(live))
        yield entries
        oldest = min((entry.loaded_at for entry in live), default=None)
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "config_service_cache_oldest_entry_age_seconds",
            "Time since the least recently loaded or confirmed live entry was read from its source.",
            value=age,
        )


class Metrics:
    """The service's metrics; `serve()` exposes them over HTTP."""

    def __init__(self, cache: ConfigCache) -> None:
        self.registry = CollectorRegistry()
        self.refreshes = Counter(
            "config_service_refreshes_total",
            "Refresh calls by result (applied, stale, rejected, invalid, unavailable).",
            ["result", "mode"],
            registry=self.registry,
        )
        self.refreshes_in_flight = Gauge(
            "config_service_refreshes_in_flight",
            "Refresh calls accepted (instance serving, request valid) and not answered yet.",
            registry=self.registry,
        )
        self.getconfig_latency = Histogram(
            "config_service_getconfig_latency_seconds",
            "Time to answer GetConfig inside the servicer.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttl_rereads = Counter(
            "config_service_ttl_rereads_total",
            "Background TTL re-reads by outcome (applied, confirmed, stale, deleted, error).",
            ["outcome"],
            registry=self.registry,
        )
        self.auth_refusals = Counter(
            "config_service_auth_refusals_total",
            "Calls refused by authentication, by status code and service (RefreshService, ConfigService).",
            ["code", "service"],
            registry=self.registry,
        )
        self.tokenreviews = Counter(
            "config_service_tokenreviews_total",
            "ServiceAccount token checks by outcome: called (a TokenReview request to the API server), "
            "cached, joined (shared an in-flight review), rate_limited, error.",
            ["outcome"],
            registry=self.registry,
        )
        # issue 21: local delivery
        self.local_long_polls = Gauge(
            "config_service_local_http_long_polls",
            "Long polls on the local HTTP API waiting for a change.",
            registry=self.registry,
        )
        self.local_delivery_latency = Histogram(
            "config_service_local_delivery_seconds",
            "From a change applied to the cache to a long poll answered (path=long_poll) or the files "
            "swapped (path=files).",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.local_file_swaps = Counter(
            "config_service_local_file_swaps_total",
            "Atomic swaps of the parameter files by directory (plain, secure) and result (ok, error).",
            ["directory", "result"],
            registry=self.registry,
        )
        self.local_files_skipped = Counter(
            "config_service_local_files_skipped_total",
            "Parameters left out of the files because their name maps to no safe or free file path.",
            registry=self.registry,
        )
        self.reload_hooks = Counter(
            "config_service_reload_hooks_total",
            "Reload hook runs after an applied change by kind (http, signal) and result (ok, error).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.registry.register(_CacheCollector(cache))
        # config_service_build_info{version, python} 1: which release each instance runs.
        build = Info("config_service_build", "The running config-service.", registry=self.registry)
        build.info(build_labels())
        self._server: Any = None
        self.port: int | None = None

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP server in a daemon thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        self.port = int(server.server_port)
        return self.port

    def stop(self) -> None:
        """Stop the HTTP server, if started."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
