"""Rows at sizes real processes cannot reach on 2 cores: 1,000 instances; 10,000 across 1,000 routes.

Both run on the one stack builder (devstack.stack: the control plane, local AWS, Cloud Map registration
and the operator as it ships, the same code the demo and the tests use), with podSync off: instances
are registered in Cloud Map directly, as a non-EKS fleet or podSync would leave them. The instances are
fake endpoints served by 2 processes (devstack.services.endpoints), each at its own loopback address
127.2.x.y and port, so the operator opens one channel and one connection per instance.

- 1,000 instances: each endpoint runs config_service's own RefreshServicer + Refresher + ConfigCache (one
  cache per endpoint), serving TLS and checking a bearer token as the charts deploy config-service (the
  routes carry the CA in `refresh.tls.caBundle`, `auth.type: bearerToken`). Sequential PutParameters;
  per change the operator's `status.latencyMs` (commit → last of 1,000 acknowledged) and the Parameter
  Store reads counted at the endpoint. Two routes over the same 1,000 instances (two prefixes): one at
  the route's default `refresh.maxConcurrency` (64: the engine keeps 64 calls in flight), one at 1,000
  (one call per instance at once); 5 runs of 20 changes each, the two alternating run by run. The target
  is checked at the default. Each endpoint host settles its garbage collector once serving, as
  config-service does (one host's full collection would stall 500 endpoints at once).
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

import base64
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Check, RowResult, fmt_ms, percentile, say
from bench.fanout_latency import TLS_TOKEN, Secured, light_material
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
    name: str,
    *,
    aws: LocalAws,
    prefix: str,
    query: dict[str, str] | None = None,
    concurrency: int = 64,
    secured: Secured | None = None,
) -> dict[str, Any]:
    """A ConfigRoute over the stack's Cloud Map service; with `secured` (TLS_TOKEN), TLS with the CA in
    caBundle and a bearer token, as the config-service chart renders a route."""
    cloud_map: dict[str, Any] = {"namespace": aws.namespace_name, "service": aws.service_name}
    if query:
        cloud_map["queryParameters"] = query
    refresh: dict[str, Any] = {
        "timeoutSeconds": 5,
        "maxAttempts": 3,
        "deadlineSeconds": 120,
        "maxConcurrency": concurrency,
    }
    if secured is not None and secured.security == TLS_TOKEN and secured.ca_pem is not None:
        refresh["tls"] = {
            "enabled": True,
            "serverName": secured.server_name,
            "caBundle": base64.b64encode(secured.ca_pem).decode(),
        }
        refresh["auth"] = {"type": "bearerToken"}
    return {
        "apiVersion": API_VERSION,
        "kind": ROUTE_KIND,
        "metadata": {"name": name},
        "spec": {
            "parameterPrefix": prefix,
            "discovery": {"cloudMap": cloud_map},
            "refresh": refresh,
        },
    }


def operator_pid(operator: OperatorProcess) -> int:
    """The pid of a started operator."""
    if operator.pid is None:
        raise RuntimeError("the operator is not running")
    return operator.pid


DEFAULT_CONCURRENCY = 64
"""A route's maxConcurrency when it sets none (the CRD's default)."""


def push_at_scale(
    *, instances: int, changes: int, runs: int = 1, profile_changes: int = 10
) -> tuple[RowResult, dict[str, Any]]:
    """The row: TLS + bearer token as the charts deploy them, at the route's default concurrency and at
    one call per instance, each in `runs` runs of `changes` changes (the two alternate run by run); then
    `profile_changes` more changes while py-spy samples the operator (bench.scale_profile), and the stages
    of the measured rollouts from their own timestamps."""
    from bench import scale_profile

    result = RowResult(
        title=f"Push at {instances:,} instances (operator, light endpoints)", method=__doc__ or ""
    )
    configs = {"default": DEFAULT_CONCURRENCY, "tuned": instances}
    finals: dict[str, list[list[dict[str, Any]]]] = {config: [] for config in configs}
    with tempfile.TemporaryDirectory(prefix="bench-scale-tls-") as material:
        secured = light_material(Path(material))
        with scale_stack(
            "bench-scale", instances, "embedded", processes=2, secure_dir=Path(material)
        ) as stack:
            aws = stack.parts.local_aws
            stack.operator_env["CONFIG_REFRESH_TOKEN_FILE"] = str(secured.token_file)
            operator = stack.deploy(
                [
                    route(
                        f"fleet-{config}",
                        aws=aws,
                        prefix=f"{aws.prefix}{config}/",
                        concurrency=c,
                        secured=secured,
                    )
                    for config, c in configs.items()
                ]
            )
            ssm = aws.client("ssm")
            names = {config: f"{aws.prefix}{config}/bench/scale/flag" for config in configs}
            namespace = stack.parts.namespace
            for name in names.values():  # each route's first rollout opens every channel
                scale_profile.push_changes(stack.custom, ssm, namespace, name, 1, label="warm")
            aws.reset_call_counts()
            for run in range(runs):
                for config in list(configs) if run % 2 == 0 else list(configs)[::-1]:
                    finals[config].append(
                        scale_profile.push_changes(
                            stack.custom, ssm, namespace, names[config], changes, f"r{run}-"
                        )
                    )
            counts = aws.call_counts()
            everything = [item for config in configs for batch in finals[config] for item in batch]
            log_text = operator.log_text()
            timeline = scale_profile.stages(everything, log_text)
            with tempfile.TemporaryDirectory(prefix="bench-scale-profile-") as scratch:
                profile = scale_profile.profiled(
                    operator_pid(operator),
                    lambda: len(
                        scale_profile.push_changes(
                            stack.custom, ssm, namespace, names["default"], profile_changes, "p"
                        )
                    ),
                    Path(scratch) / "scale-operator.txt",
                )
    reads = sum(counts.get(a, 0) for a in READS)
    statuses = [item["status"] for item in everything]
    refreshed = [int(status.get("refreshed", 0)) for status in statuses]
    latency = {
        config: [[float(item["status"].get("latencyMs", 0)) for item in batch] for batch in finals[config]]
        for config in configs
    }
    rows = []
    for config, concurrency in configs.items():
        every = [value for batch in latency[config] for value in batch]
        per_run_p50 = sorted(percentile(batch, 50) for batch in latency[config])
        per_run_p99 = sorted(percentile(batch, 99) for batch in latency[config])
        phases: Counter[str] = Counter(item["status"]["phase"] for batch in finals[config] for item in batch)
        say(
            f"  {instances} instances, maxConcurrency {concurrency} ({config}): commit → last ack p50"
            f" {percentile(every, 50):.0f} ms p99 {percentile(every, 99):.0f} ms over {runs} x {changes}"
            f" changes; phases {dict(phases)}"
        )
        rows.append(
            [
                f"{instances:,}",
                "TLS + bearer token",
                f"{'default' if config == 'default' else 'tuned'} ({concurrency})",
                f"{runs} x {changes}",
                " / ".join(
                    fmt_ms(v) for v in (per_run_p50[0], per_run_p50[len(per_run_p50) // 2], per_run_p50[-1])
                ),
                " / ".join(
                    fmt_ms(v) for v in (per_run_p99[0], per_run_p99[len(per_run_p99) // 2], per_run_p99[-1])
                ),
                fmt_ms(percentile(every, 50)),
                fmt_ms(percentile(every, 99)),
                fmt_ms(max(every)),
                ", ".join(f"{k} {v}" for k, v in phases.items()),
            ]
        )
    total = len(everything)
    say(f"  {reads} reads over {total} changes ({reads / total:.2f}/change); refreshed min {min(refreshed)}")
    result.tables.append(
        (
            [
                "instances",
                "transport, auth",
                "maxConcurrency",
                "runs x changes",
                "p50 per run (min / median / max)",
                "p99 per run (min / median / max)",
                "p50 of all",
                "p99 of all",
                "max",
                "phases",
            ],
            rows,
        )
    )
    result.tables.append(
        (
            ["changes", "refreshed (min)", "Parameter Store reads", "per change"],
            [[str(total), str(min(refreshed)), str(reads), f"{reads / total:.2f}"]],
        )
    )
    default_all = [value for batch in latency["default"] for value in batch]
    p50, p99 = percentile(default_all, 50), percentile(default_all, 99)
    tuned_p99 = percentile([value for batch in latency["tuned"] for value in batch], 99)
    result.checks.append(
        Check(
            what=f"consumer has event → last of {instances:,} acknowledged (whole operator, from commit)",
            target=f"p99 ≤ {WHOLE_1000_P99_MS:g} ms",
            measured=(
                f"p99 {fmt_ms(p99)}, p50 {fmt_ms(p50)} (commit → last ack, {runs} runs x {changes} changes;"
                f" TLS + bearer token, maxConcurrency {DEFAULT_CONCURRENCY}, the route default; one call"
                f" per instance at once: p99 {fmt_ms(tuned_p99)})"
            ),
            met=p99 <= WHOLE_1000_P99_MS,
        )
    )
    result.notes.append(scale_profile.SCALE_HISTORY_NOTE)
    result.notes.append(scale_profile.waits_note(log_text))
    result.notes.append(scale_profile.SCALE_TAIL_NOTE)
    result.notes.append(scale_profile.SCALE_SETTLED_NOTE)
    result.notes.append(scale_profile.SCALE_ENDPOINT_COLLECTOR_NOTE)
    if timeline:
        result.tables.append(scale_profile.stages_table(timeline, f"{instances:,} instances"))
    if profile is not None:
        result.tables += scale_profile.profile_tables(profile, f"{instances:,} instances")
        result.notes.append(scale_profile.PROFILE_NOTE)
    else:
        result.notes.append("No profile: py-spy (a dev extra) is not installed or could not attach.")
    extra = {"reads_per_change": reads / total, "p99": p99, "counts": counts, "refreshed": refreshed}
    return result, extra
