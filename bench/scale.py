"""Rows at sizes real processes cannot reach on 2 cores: 1,000 instances; 10,000 across 1,000 routes.

Both run on the one stack builder (devstack.stack: the control plane, local AWS, Cloud Map registration
and the operator as it ships, the same code the demo and the tests use), with podSync off: instances
are registered in Cloud Map directly, as a non-EKS fleet or podSync would leave them. The instances are
fake endpoints served by 2 processes (devstack.services.endpoints), each at its own loopback address
127.2.x.y and port, so the operator opens one channel and one connection per instance.

- 1,000 instances: each endpoint runs config_service's own RefreshServicer + Refresher + ConfigCache (one
  cache per endpoint). Sequential PutParameters; per change the operator's `status.latencyMs` (commit →
  last of 1,000 acknowledged) and the Parameter Store reads counted at the endpoint. The route sets
  `refresh.maxConcurrency: 1000` (the default, 64, would queue the fan-out in 16 waves).
- operator memory: 10,000 instances registered in Cloud Map across 1,000 ConfigRoutes (route r has
  prefix /config-service/t<r>/ and discovers the 10 instances whose attribute tenant = t<r>). Each
  instance is its own endpoint at its own address (10,000 distinct addresses: all of 127.0.0.0/8 is
  loopback on Linux), answering APPLIED. RSS (VmRSS) of the operator process is read from /proc: once
  with no ConfigRoute (the same operator started and stopped before the routes are applied), then after
  the routes are indexed, and its peak (VmHWM) after one rollout per route for every route. Counted, not
  assumed: the routes whose rollout refreshed all its instances, the distinct addresses the rollouts'
  `status.instances[]` name as refreshed, and the distinct endpoint addresses holding an established
  connection from the operator at the end (/proc/net/tcp).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Check, RowResult, fmt_ms, percentile, say
from bench.targets import WHOLE_1000_P99_MS
from configrefresh_api.groupversion import API_VERSION, GROUP, REFRESHES, ROUTE_KIND, VERSION
from configrefresh_api.phases import TERMINAL_PHASES
from devstack.aws.local_aws import LocalAws
from devstack.services.endpoints import FakeEndpoints, Kind
from devstack.stack import kube
from devstack.stack.deploy import deploy
from devstack.stack.operator import OperatorProcess, operator_environment
from devstack.stack.parts import Parts

FINAL = TERMINAL_PHASES
READS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath")


class Scale:
    """The parts (devstack.stack.parts), fake endpoints, and operators on them (podSync off)."""

    def __init__(self, parts: Parts, endpoints: FakeEndpoints) -> None:
        self.parts = parts
        self.endpoints = endpoints
        self.operators: list[OperatorProcess] = []
        self.operator_env: dict[str, str] = {}
        """Added to each new operator's environment (the rss row's profile pass: tracemalloc on)."""
        from kubernetes import client

        self.api_client = parts.control_plane.api_client()
        self.custom = client.CustomObjectsApi(self.api_client)

    def operator(self) -> OperatorProcess:
        """A new operator process (not started), its own log file."""
        parts = self.parts
        env = operator_environment(
            parts.control_plane,
            parts.local_aws,
            {"CONFIG_REFRESH_POD_SYNC": "false", **self.operator_env},
            namespace=parts.namespace,
        )
        process = OperatorProcess(
            namespace=parts.namespace, env=env, log_path=parts.workdir / f"operator-{len(self.operators)}.log"
        )
        self.operators.append(process)
        return process

    def deploy(self, routes: list[dict[str, Any]], *, register: bool = True) -> OperatorProcess:
        """Register the endpoints (unless already), apply `routes`, start an operator, wait until every
        route is Ready (the shared deploy step, devstack.stack.deploy)."""
        parts = self.parts
        operator = self.operator()
        names = deploy(
            control_plane=parts.control_plane,
            local_aws=parts.local_aws,
            namespace=parts.namespace,
            instances=self.endpoints if register else (),
            routes=routes,
            operator=operator,
            timeout=300,
        )
        kube.wait_routes_ready(parts.control_plane, parts.namespace, names, timeout=300)
        return operator

    def rollouts(self) -> list[dict[str, Any]]:
        """Every ConfigRefresh; a list the API server could not finish in time (5xx: 1,000 objects on a
        machine this loaded) is asked again, up to 5 times."""
        from kubernetes.client.exceptions import ApiException

        for attempt in range(5):
            try:
                answer: Any = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.parts.namespace, REFRESHES, _request_timeout=120
                )
                break
            except ApiException as error:
                if error.status is None or error.status < 500 or attempt == 4:
                    raise
                say(f"  listing ConfigRefreshes: {error.status} {error.reason}; again")
                time.sleep(2)
        items: list[dict[str, Any]] = answer["items"]
        return items

    def close(self) -> None:
        for operator in self.operators:
            operator.stop(grace=5.0)
        self.api_client.close()  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def scale_stack(namespace: str, endpoints: int, kind: Kind, **options: Any) -> Iterator[Scale]:
    with (
        tempfile.TemporaryDirectory(prefix=f"{namespace}-") as scratch,
        Parts.start(namespace=namespace, workdir=Path(scratch)) as parts,
    ):
        served = FakeEndpoints(endpoints, kind=kind, **options)
        try:
            stack = Scale(parts, served)
            try:
                yield stack
            finally:
                stack.close()
        finally:
            served.close()


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


def operator_pid(operator: OperatorProcess) -> int:
    """The pid of a started operator."""
    if operator.pid is None:
        raise RuntimeError("the operator is not running")
    return operator.pid


def push_at_scale(
    *, instances: int, changes: int, profile_changes: int = 10
) -> tuple[RowResult, dict[str, Any]]:
    """The row; then `profile_changes` more changes while py-spy samples the operator (bench.scale_profile),
    and the stages of the measured rollouts from their own timestamps."""
    from bench import scale_profile

    result = RowResult(
        title=f"Push at {instances:,} instances (operator, light endpoints)", method=__doc__ or ""
    )
    with scale_stack("bench-scale", instances, "embedded", processes=2) as stack:
        aws = stack.parts.local_aws
        operator = stack.deploy([route("fleet", aws=aws, prefix=aws.prefix, concurrency=instances)])
        ssm = aws.client("ssm")
        name = f"{aws.prefix}bench/scale/flag"
        namespace = stack.parts.namespace
        scale_profile.push_changes(stack.custom, ssm, namespace, name, 1, label="warm")
        aws.reset_call_counts()
        finals = scale_profile.push_changes(stack.custom, ssm, namespace, name, changes)
        counts = aws.call_counts()
        statuses = [item["status"] for item in finals]
        phases: Counter[str] = Counter(status["phase"] for status in statuses)
        refreshed = [int(status.get("refreshed", 0)) for status in statuses]
        latencies = [float(status.get("latencyMs", 0)) for status in statuses]
        timeline = scale_profile.stages(finals, operator.log_text())
        with tempfile.TemporaryDirectory(prefix="bench-scale-profile-") as scratch:
            profile = scale_profile.profiled(
                operator_pid(operator),
                lambda: len(
                    scale_profile.push_changes(stack.custom, ssm, namespace, name, profile_changes, "p")
                ),
                Path(scratch) / "scale-operator.txt",
            )
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
    result.notes.append(scale_profile.SCALE_HISTORY_NOTE)
    if timeline:
        result.tables.append(scale_profile.stages_table(timeline, f"{instances:,} instances"))
    if profile is not None:
        result.tables += scale_profile.profile_tables(profile, f"{instances:,} instances")
        result.notes.append(scale_profile.PROFILE_NOTE)
    else:
        result.notes.append("No profile: py-spy (a dev extra) is not installed or could not attach.")
    extra = {"reads_per_change": reads / changes, "p99": p99, "counts": counts, "refreshed": refreshed}
    return result, extra
