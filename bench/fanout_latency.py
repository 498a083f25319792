"""Fan-out latency: time from the start of ``FanOut.run()`` to the last instance's acknowledgment.

What it measures: the operator's fan-out alone (channels warm, one new parameter version per rollout,
every target answering APPLIED), for fleets of 10, 100 and 1,000 instances. Nothing here asserts a
number: it prints them (and ``bench/fanout.py`` turns them into the report's row).

How, so that a figure survives a skeptical reader:

- **Independent runs.** Each size is measured in ``--runs`` (at least 5) runs. A run is a fresh event
  loop with a fresh ``FanOut``, ``ChannelPool`` and ``BreakerRegistry`` (new connections, new TLS
  handshakes): its first rollout is the cold one, reported apart; then ``--samples`` warm rollouts per
  configuration. The spread is reported as min / median / max over the runs of each run's p50 and p99,
  beside the p99 of every warm sample of every run.
- **The route's default concurrency and a tuned one.** The policy is the one the operator builds
  (``routes.route_from_object`` then ``mapping.policy_for``) for a ConfigRoute shaped like the one the
  config-service chart renders: once with ``maxConcurrency`` unset (the CRD default, as the operator
  applies it) and once tuned to the fleet size (every call in flight at once). Within a run the two
  configurations and the bare baseline take turns, rollout by rollout, so they see the same machine.
- **TLS and a bearer token, as the charts deploy them.** ``spec.refresh.tls`` enabled with the serving
  CA in ``caBundle`` and a ``serverName`` (instances are dialled by IP; their certificate names a
  Service), ``auth.type: bearerToken`` with the operator's token file; each endpoint serves TLS
  (config_service's ReloadingCertificate) and checks the token with config_service's own
  AuthInterceptor and token file. The chart's default ``refreshAuth.mode`` is ``serviceAccountToken``:
  the same ``authorization`` header, checked against a TokenReview cache instead of a token file.
  ``plaintext`` (no TLS, no token) is measured only where asked for and labelled as such.

The backends, said in the output as well:

- ``real``: that many real ``config-service`` processes (devstack.services.fleet) on 127.0.0.x,
  bootstrapped from a local AWS stack (moto server process). Used for fleets of up to ``--real-max`` (10).
- above ``--real-max``, NOT config-service processes (100 real ones do not fit on a 2-core machine):
  ``--light-processes`` (2) separate Python processes serve that many distinct endpoints
  (devstack.services.endpoints, the scale rows' fake endpoints: each its own address 127.2.x.y and
  port, so one channel and one connection each, with config-service's TLS and token check).
  ``embedded`` (default): each endpoint its own grpc.aio server running config_service's own refresh path
  (RefreshServicer + Refresher + ConfigCache; no bootstrap). ``minimal``: a trivial servicer that
  answers APPLIED, up to 1,000 endpoints per server.

- **The operator's garbage collector.** The operator settles its collector once started
  (refresh_operator/collector.py: startup objects frozen, a larger young generation). The engine here runs
  inside the benchmark's own process, so ``measure`` and the profile settle it the same way while they
  run (``operator_collector``); with the interpreter's defaults, the full collections of this process's
  heap (matplotlib, the harness) landed inside rollouts and made the tail of every configuration,
  the bare gather's too: a tail of the harness, which the operator does not have.

The "bare" baseline is one ``asyncio.gather`` of ``stub.Refresh`` over the same warm channels with the
same metadata, without the engine: the floor of this machine for the same calls.

Usage: ``.venv/bin/python bench/fanout_latency.py [--sizes 10,100] [--runs 5] [--samples 100]
[--security tls-token|plaintext] [--real-max 10] [--light embedded|minimal] [--light-processes 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import itertools
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack"))
sys.path.insert(0, str(ROOT))  # run as a script (see Usage), bench.common is not on the path otherwise

from bench.common import cpu_seconds_of, percentile  # noqa: E402
from configrefresh.v1 import refresh_service_pb2 as pb  # noqa: E402
from devstack.services.endpoints import FakeEndpoints, Kind  # noqa: E402
from refresh_operator.fanout import (  # noqa: E402
    BreakerRegistry,
    ChannelPool,
    FanOut,
    RefreshPolicy,
    Target,
    TargetOutcome,
)
from refresh_operator.fanout.mapping import OperatorCredentials, policy_for  # noqa: E402
from refresh_operator.routes import route_from_object  # noqa: E402

TLS_TOKEN = "tls-token"  # noqa: S105 - a mode name, not a secret
PLAINTEXT = "plaintext"
SECURITY_LABELS = {
    TLS_TOKEN: "TLS + bearer token (as the charts deploy it)",
    PLAINTEXT: "PLAINTEXT, no auth (not how the charts deploy it)",
}
LIGHT_SERVER_NAME = "config-service.bench.svc"
"""The name in the light endpoints' certificate, as the chart's `<fullname>.<namespace>.svc`."""
CRD = ROOT / "crds" / "configrefresh.io_configroutes.yaml"
BARE_TIMEOUT_SECONDS = 60.0


# ----- the policy the operator builds for a chart-shaped route ---------------------------------------


@dataclass(frozen=True)
class Secured:
    """What the operator needs to call a backend's endpoints: the CA, the name checked, the token."""

    security: str
    ca_pem: bytes | None = None
    server_name: str | None = None
    token_file: Path | None = None


def route_policy(secured: Secured, max_concurrency: int | None) -> RefreshPolicy:
    """The RefreshPolicy the operator builds for a ConfigRoute as the config-service chart renders it
    (TLS with caBundle and serverName, auth bearerToken), or a plaintext one without a token;
    ``max_concurrency`` None leaves ``maxConcurrency`` unset (the route's default)."""
    refresh: dict[str, Any] = {"port": 50051}
    if max_concurrency is not None:
        refresh["maxConcurrency"] = max_concurrency
    if secured.security == TLS_TOKEN:
        assert secured.ca_pem is not None
        assert secured.token_file is not None
        refresh["tls"] = {
            "enabled": True,
            "serverName": secured.server_name,
            "caBundle": base64.b64encode(secured.ca_pem).decode(),
        }
        refresh["auth"] = {"type": "bearerToken"}
    else:
        refresh["tls"] = {"enabled": False}
        refresh["auth"] = {"type": "none"}
    route = route_from_object(
        {
            "apiVersion": "configrefresh.io/v1alpha1",
            "kind": "ConfigRoute",
            "metadata": {"name": "bench", "namespace": "bench"},
            "spec": {
                "parameterPrefix": "/config-service/",
                "discovery": {"cloudMap": {"namespace": "bench", "service": "bench"}},
                "refresh": refresh,
            },
        }
    )
    token = str(secured.token_file) if secured.token_file is not None else None
    return policy_for(route.refresh, OperatorCredentials(token_file=token))


def default_max_concurrency() -> int:
    """The route's default maxConcurrency, as the operator applies it to a route that leaves it unset;
    checked against the CRD's own `default` so the two cannot drift apart unnoticed."""
    applied = route_policy(Secured(PLAINTEXT), None).max_concurrency
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    crd = schema["properties"]["spec"]["properties"]["refresh"]["properties"]["maxConcurrency"]["default"]
    if int(crd) != applied:
        raise SystemExit(f"maxConcurrency default: the CRD says {crd}, the operator applies {applied}")
    return applied


# ----- the light backend (devstack.services.endpoints) -------------------------------------------


def light_material(workdir: Path) -> Secured:
    """A CA, a serving certificate for LIGHT_SERVER_NAME and a token file, in ``workdir``."""
    import trustme

    workdir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(LIGHT_SERVER_NAME)
    (workdir / "server.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(workdir / "server.key"))
    token_file = workdir / "token"
    token_file.write_text(secrets.token_urlsafe(32) + "\n")
    return Secured(TLS_TOKEN, ca.cert_pem.bytes(), LIGHT_SERVER_NAME, token_file)


class LightBackend:
    def __init__(
        self,
        count: int,
        *,
        kind: Kind,
        processes: int,
        security: str = PLAINTEXT,
        workdir: Path | None = None,
    ) -> None:
        """``security`` TLS_TOKEN needs ``workdir`` (the CA, serving certificate and token go there)."""
        processes = max(1, min(processes, count))
        what = (
            "config_service's RefreshServicer+Refresher+ConfigCache per endpoint, no bootstrap"
            if kind == "embedded"
            else "a minimal in-bench RefreshService that answers APPLIED"
        )
        self.kind = f"light-{kind}"
        self.description = (
            f"endpoints, NOT config-service processes: {what}, served by {processes} separate process(es)"
        )
        secure_dir: Path | None = None
        self.secured = Secured(PLAINTEXT)
        if security == TLS_TOKEN:
            assert workdir is not None, "TLS needs a directory for its certificate and token"
            self.secured = light_material(workdir)
            secure_dir = workdir
        self._endpoints = FakeEndpoints(count, kind=kind, processes=processes, secure_dir=secure_dir)
        self.targets = [
            Target(instance_id=endpoint.instance_id, address=endpoint.address, attributes={})
            for endpoint in self._endpoints
        ]

    @property
    def pids(self) -> list[int]:
        return self._endpoints.pids

    def close(self) -> None:
        self._endpoints.close()


class RealBackend:
    kind = "real"

    def __init__(self, count: int, workdir: Path, *, security: str) -> None:
        from devstack.aws.local_aws import LocalAws
        from devstack.services.fleet import ServiceFleet

        self.description = "real config-service processes on a local AWS stack"
        self._aws = LocalAws.start(log_path=workdir / "moto.log")
        tls = security == TLS_TOKEN
        self._fleet = ServiceFleet(
            count,
            local_aws=self._aws,
            workdir=workdir / "fleet",
            auth="token" if tls else "insecure",
            tls=tls,
        )
        self._fleet.start()
        self._fleet.wait_serving(180)
        self.targets = [
            Target(instance_id=instance.instance_id, address=instance.refresh_address, attributes={})
            for instance in self._fleet
        ]
        credentials = self._fleet.credentials
        self.secured = (
            # The fleet's certificates name config-service.local beside each instance's address.
            Secured(
                TLS_TOKEN, credentials.ca_file.read_bytes(), "config-service.local", credentials.token_file
            )
            if tls and credentials.ca_file is not None
            else Secured(PLAINTEXT)
        )

    @property
    def pids(self) -> list[int]:
        return [instance.pid for instance in self._fleet if instance.pid is not None]

    def close(self) -> None:
        self._fleet.close()
        self._aws.stop()


def open_backend(
    size: int,
    scratch: Path,
    *,
    security: str,
    real_max: int = 10,
    light: Kind = "embedded",
    processes: int = 2,
) -> Any:
    """Real config-service processes up to ``real_max`` instances, light endpoints above."""
    workdir = scratch / f"{security}-{size}"
    if size <= real_max:
        return RealBackend(size, workdir, security=security)
    return LightBackend(size, kind=light, processes=processes, security=security, workdir=workdir)


# ----- measuring -------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One independent run: its cold rollout and its warm samples per configuration (ms)."""

    cold_ms: float
    acks: dict[str, list[float]] = field(default_factory=dict)
    bare: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds per warm rollout: of this (the operator's) process and of the serving processes."""


def _request(version: int, name: str) -> pb.RefreshRequest:
    return pb.RefreshRequest(
        refresh_id=f"bench-v{version}",
        parameter_name=name,
        version=version,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE,
        value=f"value-{version}",
        value_type=pb.VALUE_TYPE_STRING,
    )


async def one_rollout(fanout: Any, targets: Sequence[Target], policy: RefreshPolicy, version: int) -> float:
    """One rollout; ms from FanOut.run() start to the last acknowledgment."""
    acks: list[float] = []

    def note(outcome: TargetOutcome) -> None:
        acks.append(time.perf_counter())

    start = time.perf_counter()
    outcomes = await fanout.run(
        targets=targets,
        request=_request(version, "/config-service/bench/fanout/flag"),
        policy=policy,
        on_outcome=note,
    )
    # Stale with this version: an earlier attempt applied it, its answer was lost (a retried call).
    bad = [o for o in outcomes if not (o.result.acknowledged and o.version == version)]
    if bad:
        raise SystemExit(f"rollout v{version}: {len(bad)} targets not applied, e.g. {bad[0]}")
    return (max(acks) - start) * 1000


async def bare_rollout(
    channels: ChannelPool, targets: Sequence[Target], policy: RefreshPolicy, version: int
) -> float:
    """The baseline: one asyncio.gather of stub.Refresh over the same warm channels, same metadata. It has
    no retries, so its calls get BARE_TIMEOUT_SECONDS instead of the policy's 2 s: a busy machine must
    not fail the baseline."""
    from refresh_operator.fanout.credentials import call_metadata

    request = _request(version, "/config-service/bench/fanout/bare")
    metadata = await call_metadata(policy, None)
    stubs = [channels.stub(target.address, policy.tls) for target in targets]
    start = time.perf_counter()
    await asyncio.gather(
        *(stub.Refresh(request, timeout=BARE_TIMEOUT_SECONDS, metadata=metadata) for stub in stubs)
    )
    return (time.perf_counter() - start) * 1000


async def _run(
    backend: Any, policies: dict[str, RefreshPolicy], samples: int, versions: Iterator[int], engine: Any
) -> RunResult:
    channels = ChannelPool()
    fanout = engine(channels=channels, breakers=BreakerRegistry())
    first = next(iter(policies.values()))
    try:
        result = RunResult(cold_ms=await one_rollout(fanout, backend.targets, first, next(versions)))
        result.acks = {name: [] for name in policies}
        own, served = time.process_time(), cpu_seconds_of(backend.pids)
        for _ in range(samples):  # taking turns, so every configuration sees the same machine
            for name, policy in policies.items():
                result.acks[name].append(await one_rollout(fanout, backend.targets, policy, next(versions)))
            result.bare.append(await bare_rollout(channels, backend.targets, first, next(versions)))
        rollouts = samples * (len(policies) + 1)
        result.cpu = {
            "operator": (time.process_time() - own) / rollouts,
            "endpoints": (cpu_seconds_of(backend.pids) - served) / rollouts,
        }
    finally:
        await channels.aclose()
    return result


@contextlib.contextmanager
def operator_collector() -> Iterator[int]:
    """This process's garbage collector set as the operator sets its own (settled: one collection, the
    survivors frozen, the young threshold raised) for the block, and as it was again after it. Yields
    how many objects were frozen."""
    from refresh_operator import collector

    thresholds = gc.get_threshold()
    try:
        yield collector.settle_after_startup()
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def measure(
    backend: Any,
    policies: dict[str, RefreshPolicy],
    *,
    runs: int,
    samples: int,
    versions: Iterator[int],
    engine: Any = FanOut,
) -> list[RunResult]:
    """``runs`` independent runs (each a fresh loop, engine and channel pool) of ``samples`` warm
    rollouts per policy, taking turns with the bare baseline; the collector set as the operator's."""
    with operator_collector():
        return [asyncio.run(_run(backend, policies, samples, versions, engine)) for _ in range(runs)]


def concurrency_policies(secured: Secured, size: int) -> dict[str, RefreshPolicy]:
    """The route's default maxConcurrency and one tuned to the fleet (every call in flight at once)."""
    default = default_max_concurrency()
    policies = {f"default ({default})": route_policy(secured, None)}
    if size > default:
        policies[f"tuned ({size})"] = route_policy(secured, size)
    return policies


# ----- where the time goes: a py-spy profile of the operator's side -----------------------------------

PROFILE_BUCKETS = (
    ("grpc: sendmsg (loopback TCP write)", "the kernel's loopback write, inside gRPC's call"),
    ("grpc: call start and finish", "grpc.aio's Cython and C core: metadata, TLS records, completion"),
    ("asyncio: scheduling", "event loop, tasks, handles, timers"),
    ("engine (refresh_operator)", "the fan-out's own Python"),
    ("waiting for the endpoints (epoll)", "the loop idle until an answer arrives"),
    ("other", "metrics, garbage collector, the rest"),
)


def classify(raw: str) -> dict[str, float]:
    """Shares of a py-spy raw profile (``-f raw``, one ``frame;frame;... count`` per line) by bucket,
    counting only samples inside the event loop (the rollouts), by their innermost Python frame and the
    native frames under it."""
    counts = dict.fromkeys((name for name, _ in PROFILE_BUCKETS), 0)
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        frames = stack.split(";")
        if not number.isdigit() or not any("_run_once" in frame for frame in frames):
            continue
        python = [index for index, frame in enumerate(frames) if ".py:" in frame]
        inner = frames[python[-1]] if python else frames[-1]
        native = frames[python[-1] + 1 :] if python else []
        if "grpc/" in inner or any("cygrpc" in frame for frame in native):
            bucket = "grpc: call start and finish"
            if any(frame.startswith("sendmsg ") for frame in native):
                bucket = "grpc: sendmsg (loopback TCP write)"
        elif "refresh_operator/" in inner:
            bucket = "engine (refresh_operator)"
        elif "selectors.py" in inner:
            bucket = "waiting for the endpoints (epoll)"
        elif any(part in inner for part in ("asyncio/", "contextlib", "_weakrefset")):
            bucket = "asyncio: scheduling"
        else:
            bucket = "other"
        counts[bucket] += int(number)
    total = sum(counts.values())
    return {name: count / total for name, count in counts.items()} if total else {}


def py_spy() -> str | None:
    """The py-spy executable of this environment (a dev extra), if installed."""
    import shutil

    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile(size: int, *, seconds: float, security: str = TLS_TOKEN) -> dict[str, float]:
    """Record the operator's side of ``seconds`` of warm default-concurrency rollouts to ``size`` light
    endpoints with py-spy (native frames, 250 samples/s) and classify it; empty if py-spy is missing."""
    executable = py_spy()
    if executable is None:
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-fanout-profile-") as scratch:
        out = Path(scratch) / "profile.txt"
        command = [sys.executable, __file__, "--spin", f"{size},{seconds},{security}"]
        for native in (["--native"], []):  # native unwinding can be refused (ptrace limits): then without
            done = subprocess.run(
                [executable, "record", "-r", "250", "-f", "raw", "-o", str(out), *native, "--", *command],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode == 0 and out.exists():
                return classify(out.read_text())
    return {}


def _spin(size: int, seconds: float, security: str) -> None:
    """Warm default-concurrency rollouts for ``seconds`` (what ``profile`` records)."""
    with tempfile.TemporaryDirectory(prefix="bench-fanout-spin-") as scratch:
        backend = open_backend(size, Path(scratch), security=security)
        try:
            policy = route_policy(backend.secured, None)
            versions = itertools.count(1)

            async def spin() -> None:
                channels = ChannelPool()
                fanout = FanOut(channels=channels, breakers=BreakerRegistry())
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    await one_rollout(fanout, backend.targets, policy, next(versions))
                await channels.aclose()

            with operator_collector():
                asyncio.run(spin())
        finally:
            backend.close()


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return min(values), percentile(values, 50), max(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10,100", help="comma-separated fleet sizes")
    parser.add_argument("--runs", type=int, default=5, help="independent runs per size")
    parser.add_argument("--samples", type=int, default=100, help="warm rollouts per configuration per run")
    parser.add_argument("--security", choices=(TLS_TOKEN, PLAINTEXT), default=TLS_TOKEN)
    parser.add_argument("--real-max", type=int, default=10, help="largest fleet run on real config-service")
    parser.add_argument("--light", choices=("embedded", "minimal"), default="embedded")
    parser.add_argument("--light-processes", type=int, default=2, help="processes serving light endpoints")
    parser.add_argument("--spin", help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile", action="store_true", help="also profile the first size's rollouts with py-spy"
    )
    args = parser.parse_args(argv)
    if args.spin:
        size, seconds, security = args.spin.split(",")
        _spin(int(size), float(seconds), security)
        return 0

    sizes = [int(size) for size in args.sizes.split(",") if size]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"fan-out latency, run() start → last ack; {args.runs} runs x {args.samples} warm rollouts")
    print(f"machine: {os.cpu_count()} CPUs, load average {load} at start; {SECURITY_LABELS[args.security]}")
    versions = itertools.count(1)
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as scratch:
        for size in sizes:
            backend = open_backend(
                size,
                Path(scratch),
                security=args.security,
                real_max=args.real_max,
                light=args.light,
                processes=args.light_processes,
            )
            try:
                policies = concurrency_policies(backend.secured, size)
                results = measure(backend, policies, runs=args.runs, samples=args.samples, versions=versions)
            finally:
                backend.close()
            print(f"{size} instances: {backend.description}")
            series = {**{name: [r.acks[name] for r in results] for name in policies}}
            series["bare gather"] = [r.bare for r in results]
            for name, per_run in series.items():
                p50s = [percentile(acks, 50) for acks in per_run]
                p99s = [percentile(acks, 99) for acks in per_run]
                pooled = [value for acks in per_run for value in acks]
                print(
                    f"  {name:<14} p50 per run {'/'.join(f'{v:.1f}' for v in spread(p50s))} ms"
                    f"  p99 per run {'/'.join(f'{v:.1f}' for v in spread(p99s))} ms"
                    f"  p99 of all {percentile(pooled, 99):.1f} ms  max {max(pooled):.1f} ms"
                )
    print("spreads are min/median/max over the runs; bare = asyncio.gather of stub.Refresh, no engine")
    if args.profile:
        print(f"py-spy profile of the operator's side, {sizes[0]} instances, default concurrency:")
        for name, share in profile(sizes[0], seconds=10.0, security=args.security).items():
            print(f"  {share:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
