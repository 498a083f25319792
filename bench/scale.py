"""Rows at sizes real processes cannot reach on 2 cores: 1,000 instances; 10,000 across 1,000 routes.

Both run the real control plane, local AWS and the operator as it ships (podSync off: instances are
registered in Cloud Map directly, as a non-EKS fleet or podSync would leave them). The instances are
endpoints served by 2 processes (bench/fanout_latency.py's light backend): each has its own address
127.1.x.y and port.

- 1,000 instances: each endpoint runs config_service's own RefreshServicer + Refresher + ConfigCache (one
  cache per endpoint). Sequential PutParameters; per change the operator's `status.latencyMs` (commit →
  last of 1,000 acknowledged) and the Parameter Store reads counted at the endpoint. The route sets
  `refresh.maxConcurrency: 1000` (the default, 64, would queue the fan-out in 16 waves).
- operator memory: 10,000 instances registered in Cloud Map across 1,000 ConfigRoutes (route r has
  prefix /config-service/t<r>/ and discovers the 10 instances whose attribute tenant = t<r>). The 10,000
  instances point at 1,000 minimal endpoints (each endpoint stands for 10 instances of 10 different
  routes; it answers APPLIED). RSS (VmRSS) of the operator process is read from /proc: once with no
  ConfigRoute (the same operator started and stopped before the routes are applied), then after the
  routes are indexed, and its peak (VmHWM) after one rollout per route for the routes listed.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import fanout_latency
from bench.common import Check, RowResult, fmt_ms, percentile, rss_kib, say
from bench.targets import RSS_BYTES, WHOLE_1000_P99_MS
from configrefresh_api.groupversion import API_VERSION, GROUP, REFRESHES, ROUTE_KIND, ROUTES, VERSION
from configrefresh_api.phases import TERMINAL_PHASES
from devstack.aws.local_aws import LocalAws
from devstack.controlplane import build as controlplane_build
from devstack.controlplane.plane import ControlPlane
from devstack.stack.operator import OperatorProcess, operator_environment

FINAL = TERMINAL_PHASES
READS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath")


class ScaleStack:
    """Control plane + local AWS + light endpoints registered in Cloud Map + routes + operator."""

    def __init__(self, workdir: Path, namespace: str) -> None:
        self.workdir = workdir
        self.namespace = namespace
        self.plane = ControlPlane.start(binaries=controlplane_build.ensure_built(quiet=True))
        self.aws = LocalAws.start(log_path=workdir / "moto.log")
        self.aws.owner_namespace = namespace  # the instances belong to the routes' namespace
        self.backend: Any = None
        self.operator: Any = None
        from kubernetes import client

        self.api_client = self.plane.api_client()
        self.custom = client.CustomObjectsApi(self.api_client)
        self.plane.ensure_crds()
        self.plane.create_namespace(namespace)

    def serve(self, endpoints: int, kind: str) -> list[tuple[str, int]]:
        self.backend = fanout_latency.LightBackend(endpoints, kind=kind, processes=2)
        out = []
        for target in self.backend.targets:
            host, port = target.address.rsplit(":", 1)
            out.append((host, int(port)))
        return out

    def register(self, instances: list[tuple[str, str, int, dict[str, str]]]) -> None:
        def one(item: tuple[str, str, int, dict[str, str]]) -> None:
            self.aws.register_instance(item[0], item[1], item[2], attributes=item[3])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, instances))

    def apply_routes(self, routes: list[dict[str, Any]]) -> None:
        for start in range(0, len(routes), 200):
            batch = {"apiVersion": "v1", "kind": "List", "items": routes[start : start + 200]}
            self.plane.kubectl("-n", self.namespace, "apply", "-f", "-", input=json.dumps(batch))

    def start_operator(self) -> None:
        env = operator_environment(
            self.plane, self.aws, {"CONFIG_REFRESH_POD_SYNC": "false"}, namespace=self.namespace
        )
        self.operator = OperatorProcess.launch(
            env=env, namespace=self.namespace, log_path=self.workdir / "operator.log", timeout=180
        )

    def rollouts(self) -> list[dict[str, Any]]:
        answer: Any = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, REFRESHES)
        items: list[dict[str, Any]] = answer["items"]
        return items

    def routes_ready(self) -> int:
        answer: Any = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, ROUTES)
        return sum(
            1
            for item in answer["items"]
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (item.get("status") or {}).get("conditions") or []
            )
        )

    def close(self) -> None:
        if self.operator is not None:
            self.operator.stop(grace=5.0)
        if self.backend is not None:
            self.backend.close()
        self.api_client.close()  # type: ignore[no-untyped-call]
        self.aws.stop()
        self.plane.stop()


def route(
    name: str, *, aws: LocalAws, prefix: str, query: dict[str, str] | None = None, concurrency: int = 64
) -> dict[str, Any]:
    cloud_map: dict[str, Any] = {"namespace": aws.namespace_name, "service": aws.service_name}
    if query:
        cloud_map["queryParameters"] = query
    return {
        "apiVersion": API_VERSION,
        "kind": ROUTE_KIND,
        "metadata": {"name": name},
        "spec": {
            "parameterPrefix": prefix,
            "discovery": {"cloudMap": cloud_map},
            "refresh": {
                "timeoutSeconds": 5,
                "maxAttempts": 3,
                "deadlineSeconds": 120,
                "maxConcurrency": concurrency,
            },
        },
    }


def push_at_scale(*, instances: int, changes: int) -> tuple[RowResult, dict[str, Any]]:
    result = RowResult(
        title=f"Push at {instances:,} instances (operator, light endpoints)", method=__doc__ or ""
    )
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        stack = ScaleStack(Path(scratch), "bench-scale")
        try:
            addresses = stack.serve(instances, "embedded")
            stack.register([(f"light-{i}", host, port, {}) for i, (host, port) in enumerate(addresses)])
            stack.apply_routes(
                [route("fleet", aws=stack.aws, prefix=stack.aws.prefix, concurrency=instances)]
            )
            stack.start_operator()
            ssm = stack.aws.client("ssm")
            name = f"{stack.aws.prefix}bench/scale/flag"

            def final(version: int) -> dict[str, Any]:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    for item in stack.rollouts():
                        parameter = item["spec"]["parameter"]
                        if (
                            parameter["name"] == name
                            and parameter.get("version") == version
                            and (item.get("status") or {}).get("phase") in FINAL
                        ):
                            return item
                    time.sleep(0.1)
                raise TimeoutError(f"v{version} not final")

            final(int(ssm.put_parameter(Name=name, Value="warm", Type="String", Overwrite=True)["Version"]))
            stack.aws.reset_call_counts()
            latencies: list[float] = []
            phases: Counter[str] = Counter()
            refreshed: list[int] = []
            for index in range(changes):
                version = int(
                    ssm.put_parameter(Name=name, Value=f"v{index}", Type="String", Overwrite=True)["Version"]
                )
                status = final(version)["status"]
                phases[status["phase"]] += 1
                refreshed.append(int(status.get("refreshed", 0)))
                latencies.append(float(status.get("latencyMs", 0)))
            counts = stack.aws.call_counts()
        finally:
            stack.close()
    reads = sum(counts.get(a, 0) for a in READS)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    say(
        f"  {instances} instances: commit → last ack p50 {p50:.0f} ms p99 {p99:.0f} ms"
        f" over {changes} changes; {reads} reads ({reads / changes:.2f}/change); phases {dict(phases)};"
        f" refreshed min {min(refreshed)}"
    )
    result.tables.append(
        (
            [
                "instances",
                "changes",
                "commit → last ack p50",
                "p99",
                "max",
                "refreshed (min)",
                "phases",
                "reads",
                "per change",
            ],
            [
                [
                    f"{instances:,}",
                    str(changes),
                    fmt_ms(p50),
                    fmt_ms(p99),
                    fmt_ms(max(latencies)),
                    str(min(refreshed)),
                    ", ".join(f"{k} {v}" for k, v in phases.items()),
                    str(reads),
                    f"{reads / changes:.2f}",
                ]
            ],
        )
    )
    result.checks.append(
        Check(
            what=f"consumer has event → last of {instances:,} acknowledged (whole operator, from commit)",
            target=f"p99 ≤ {WHOLE_1000_P99_MS:g} ms",
            measured=f"p99 {fmt_ms(p99)}, p50 {fmt_ms(p50)} (commit → last ack, {changes} changes)",
            met=p99 <= WHOLE_1000_P99_MS,
        )
    )
    extra = {"reads_per_change": reads / changes, "p99": p99, "counts": counts, "refreshed": refreshed}
    return result, extra


def operator_memory(*, routes: int, per_route: int, rollouts: int) -> RowResult:
    instances = routes * per_route
    result = RowResult(
        title=f"Operator memory: {instances:,} instances across {routes:,} routes", method=__doc__ or ""
    )
    endpoints_count = min(1000, instances)
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as scratch:
        stack = ScaleStack(Path(scratch), "bench-rss")
        try:
            endpoints = stack.serve(endpoints_count, "minimal")
            started = time.monotonic()
            stack.register(
                [
                    (f"i-{k}", *endpoints[k % endpoints_count], {"tenant": f"t{k // per_route}"})
                    for k in range(instances)
                ]
            )
            say(f"  registered {instances} instances in Cloud Map in {time.monotonic() - started:.0f} s")
            # The same operator with no ConfigRoute first: what the process costs before any route.
            stack.start_operator()
            time.sleep(5)
            base_rss, _ = rss_kib(stack.operator.pid)
            stack.operator.stop(grace=5.0)
            say(f"  operator with no routes: RSS {base_rss / 1024:.0f} MiB")
            prefix = stack.aws.prefix
            stack.apply_routes(
                [
                    route(f"t{r}", aws=stack.aws, prefix=f"{prefix}t{r}/", query={"tenant": f"t{r}"})
                    for r in range(routes)
                ]
            )
            stack.start_operator()
            pid = stack.operator.pid
            deadline = time.monotonic() + 300
            while stack.routes_ready() < routes and time.monotonic() < deadline:
                time.sleep(1)
            ready = stack.routes_ready()
            idle_rss, _ = rss_kib(pid)
            say(f"  operator indexed {ready}/{routes} routes; RSS {idle_rss / 1024:.0f} MiB")
            ssm = stack.aws.client("ssm")
            started = time.monotonic()
            peak = idle_rss
            for r in range(rollouts):
                ssm.put_parameter(Name=f"{prefix}t{r}/flag", Value="on", Type="String", Overwrite=True)
                if r % 20 == 0:
                    peak = max(peak, rss_kib(pid)[0])
            deadline = time.monotonic() + 600
            phases: Counter[str] = Counter()
            while time.monotonic() < deadline:
                items = stack.rollouts()
                phases = Counter((i.get("status") or {}).get("phase", "Pending") for i in items)
                peak = max(peak, rss_kib(pid)[0])
                if len(items) >= rollouts and sum(phases[p] for p in FINAL) >= rollouts:
                    break
                time.sleep(1)
            took = time.monotonic() - started
            after, hwm = rss_kib(pid)
            targets = sum(int((i.get("status") or {}).get("refreshed", 0)) for i in stack.rollouts())
        finally:
            stack.close()
    say(
        f"  {rollouts} rollouts in {took:.0f} s ({dict(phases)}), {targets} instance refreshes; RSS after"
        f" {after / 1024:.0f} MiB, peak (VmHWM) {hwm / 1024:.0f} MiB"
    )
    result.tables.append(
        (
            [
                "instances",
                "routes",
                "routes Ready",
                "RSS, no routes",
                "RSS, routes indexed",
                "per route",
                "rollouts",
                "instance refreshes",
                "RSS after",
                "peak RSS (VmHWM)",
            ],
            [
                [
                    f"{instances:,}",
                    f"{routes:,}",
                    str(ready),
                    f"{base_rss / 1024:.0f} MiB",
                    f"{idle_rss / 1024:.0f} MiB",
                    f"{(idle_rss - base_rss) / max(1, routes):.0f} KiB",
                    f"{rollouts} ({', '.join(f'{k} {v}' for k, v in phases.items())}, {took:.0f} s)",
                    str(targets),
                    f"{after / 1024:.0f} MiB",
                    f"{hwm / 1024:.0f} MiB",
                ]
            ],
        )
    )
    result.notes.append(
        f"Where it goes: {base_rss / 1024:.0f} MiB is the operator before any route (interpreter, kopf and"
        " the Kubernetes client libraries it imports, boto3 with its three clients, gRPC); routes add"
        f" {(idle_rss - base_rss) / max(1, routes):.0f} KiB each (kopf's per-object handling at start-up,"
        " the route index); the rollouts add"
        f" {(after - idle_rss) / 1024:.0f} MiB, mostly one warm gRPC channel per endpoint reached"
        f" ({endpoints_count:,} endpoints here; about 50 KiB each, kept until idle for 10 minutes)."
    )
    scale_note = "" if instances == 10_000 else f" (run at {instances:,} / {routes:,}: --quick)"
    result.checks.append(
        Check(
            what=f"operator RSS with 10,000 instances across 1,000 routes{scale_note}",
            target=f"≤ {RSS_BYTES / 1e6:.0f} MB",
            measured=(
                f"peak {hwm * 1024 / 1e6:.0f} MB (VmHWM), {idle_rss * 1024 / 1e6:.0f} MB with routes indexed"
            ),
            met=hwm * 1024 <= RSS_BYTES,
        )
    )
    return result
