"""Rows on the whole local stack (devstack.stack, the one `make demo` uses): latency, reads, idle, burst.

The stack: kube-apiserver + etcd, local AWS (moto + change emitter), N real config-service processes on
127.0.0.x, Ready Pod objects, a ConfigRoute with podSync, the operator as it ships, secured as the
charts deploy it (every instance's refresh port over TLS, accepting only the fleet's bearer token; the
route trusts the fleet's CA and the operator sends the token). Measured:

- whole path, over sequential changes to one key: staleness per instance, with the same client-side
  probe as the polling cache (bench/staleness.py): after PutParameter returns, GetConfig on every
  instance until it serves the new version. Per change, "last applied" is the slowest instance;
  the staleness figures are over every (change, instance). The operator's own `status.latencyMs`
  (commit → last acknowledgment) is shown beside it; a rollout without it is counted as missing, never
  as 0. No EventBridge → SQS delivery is in these figures: the local stack's change emitter publishes
  inside moto's PutParameter (see "EventBridge delivery" below).
- whole path again, as many changes with no probe running: PutParameter returned → the last instance's
  acknowledgment (the parameter's LastModifiedDate + the rollout's `status.latencyMs`, both from the
  same clock as the writer's). An instance acknowledges after it applied the change, so this bounds
  "last instance applied" from above; the probe cannot be used for that target, since its GetConfig
  calls to every instance (up to 1,000 a second) share the machine's 2 cores with the
  operator and the instances, and its resolution is itself about 250 ms at 100 instances. The target
  check takes this pass; the probe pass is the staleness comparison with a polling cache (the same
  probe on both sides). Beside it, the CPU time each change cost the instances together and the
  operator (every thread: each process's CPU-time clock, from the PutParameter to the final status),
  divided by the machine's cores: the shortest time that work can take on this machine however it is
  scheduled. Most of it is the instances' refresh handling, which a real fleet runs on as many CPUs as it
  has pods; here every instance waits for one of the 2 cores (the `fleet` row measures the same at 300
  instances).
- Parameter Store calls per change, counted at the local AWS endpoint (`call_counts()`), by action.
- idle cost, at the largest fleet, once 10 parameters are cached: Parameter Store reads per minute with
  nothing changing, the instances' TTL safety net and the operator's resync pass included. Both run on
  timers longer than a practical window (TTL 600 s, re-read at 540-600 s, from 480 s when it tops up a call;
  resync every 300 s), so this stack runs both SHORTENED by the same factor k (instances `--ttl-seconds`
  600/k, the route's `spec.resync.intervalSeconds` 300/k), counts every Parameter Store read over the window
  (`make bench`: k = 10, 180 s = three shortened TTLs, 100 instances; `--quick`: k = 20, 60 s = two, 10
  instances) and divides the rate by k for the defaults. By action: GetParameters is the TTL safety net
  (config_service/ttl.py), GetParametersByPath the resync pass, GetParameter the push path. The scaling is
  approximate: the TTL check runs every TTL/10 when shortened but every 30 s (TTL/20) at the defaults, so at
  the defaults re-reads come up to 2.5 % sooner, and how many entries share one GetParameters call (10 names
  at most; a round fills its last call up with entries due within TTL x 0.1) differs. The bound with no
  sharing at all: one call per cached parameter per instance per ~585 s.
- burst: 100 PutParameter to one key as fast as moto takes them (aimed at 1 s): rollouts started for it,
  their final phases, the value on every instance at the end, and whether any of 3 sampled instances ever
  served an older version after a newer one (regression), sampled continuously during the burst.

Where the time of the 100-instance path goes (issue 20; timestamps the operator logged at each stage,
30 changes per build, d2bc05f and the next build alternating in one run on the shared 2-core machine,
p50): PutParameter returned → message received 0.5 ms; → GetParameter answered 11 ms; → ConfigRefresh
created 7 ms; kopf's rollout handler starts about 1 ms before the create's reply is back in the recorder
(the watch is as fast as the reply: an in-process hand-over would gain nothing); → instances discovered
36 ms (DiscoverInstances asked for 100 got a full reply at exactly 100 and fell back to six listing
calls; 14 ms since it asks for 1,000); → last instance acknowledged 64-72 ms (the fan-out, against a
bare gather's 15-20 ms: it shares the loop and the GIL with kopf and the threads making status patches;
in a py-spy profile kopf's processing of watch events had more samples on the loop than the fan-out).
Whole path p50 130 → 99 ms; in a second such run (45 changes each, with the Halted look-up moved beside
the fan-out) p50 134 → 111 ms, p90 188 → 137 ms, handler → discovered 37 → 12 ms, the fan-out unchanged.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench import instance_cost, scale_profile, wake_probe
from bench.common import Check, RowResult, cpu_seconds, fmt_ms, percentile, say
from bench.staleness import Probe, last_per_write, summarize
from bench.targets import BURST_FAN_OUTS, BURST_SECONDS, PATH_100_P50_MS, PATH_100_P99_MS
from configrefresh_api.groupversion import GROUP, REFRESHES, VERSION
from configrefresh_api.phases import TERMINAL_PHASES
from devstack.stack.builder import Stack

NOTE = (
    '"All ssm calls by action" counts every call the local AWS endpoint answered during the changes (the'
    ' benchmark\'s PutParameters included); "Parameter Store reads" is GetParameter, GetParameters and'
    " GetParametersByPath: the operator's and the instances' reads."
)
EVENTBRIDGE_NOTE = (
    "EventBridge delivery: on the local stack the change emitter publishes the event inside moto's"
    " PutParameter, so every push figure here holds no Parameter Store → EventBridge → SQS delivery;"
    " on AWS that delay comes on top, and could not be measured here (no AWS account). AWS publishes no"
    ' latency figure for it (the EventBridge FAQ says events are delivered "in near real-time",'
    " https://aws.amazon.com/eventbridge/faqs/). A third-party measurement of a custom event from PutEvents"
    " to an asynchronously invoked Lambda target, eu-west-1, after EventBridge's February 2023 latency"
    " improvement, gives p50 148 ms, p90 241 ms, p99 387 ms"
    " (https://bitesizedserverless.com/bite/serverless-messaging-latency-compared/); it covers neither"
    " the Parameter Store → EventBridge hop (service events are delivered best-effort) nor an SQS"
    " target, so it is an indication of the order of magnitude, not a bound."
)
INSTANCE_COST_NOTE = (
    "Where an instance's CPU per change goes (bench/instance_cost.py), the instance side of the floor: the"
    " first row is the no-probe pass above, every instance's CPU by thread over its changes, divided by"
    " changes x instances (main thread: the asyncio loop, where grpc.aio's server and every handler run;"
    " gRPC core's threads: polling the sockets, TLS, HTTP/2; other: the rest, threads that exited"
    " included, from the process's CPU-time clock). The next two rows call one of the same instances"
    " directly afterwards, with nothing else running, over the same TLS and token: the same Refresh, the"
    " same code, once with the process going idle between calls (as every instance does between two"
    " changes) and once back to back, where it stays warm. What the gapped row adds to the warm one is"
    " the cost of waking from idle (the event loop's and gRPC's poller's wake-ups, cold caches); what"
    " the first row adds to the gapped one is 100 processes contending for 2 cores and their caches at"
    " once. Every pod pays the wake-up in a cluster too, but on its own CPU and in parallel with the"
    " others, so there a change's latency holds about one instance's figure, not their sum over the"
    " cores. The next table tells the machine's part of the wake-up from the software's: the same plain"
    " Python burst (lookups, string building, JSON, hashing over a fixed working set of a few tens of"
    " MiB) timed by its thread's CPU clock, back to back and after sleeping as long; it wakes no event"
    " loop and no gRPC thread, so what it gains after a sleep is the CPU's caches and TLB refilled after"
    " whatever else ran on the host meanwhile. Where it grows as much as the Refresh or more, the"
    " wake-up is the machine's, and only less memory touched per call shrinks it. The profile: py-spy"
    " on that instance during more gapped calls, native frames, only the"
    " thread holding the GIL (gRPC core's threads run without it and are not in it); a sample counts for"
    " the first bucket whose code is on its stack, our code before gRPC's and the loop's."
)
FINAL = TERMINAL_PHASES
READS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath")
TTL_DEFAULT = 600.0  # config_service/settings.py ttl_seconds
RESYNC_DEFAULT = 300  # the CRD's spec.resync.intervalSeconds default
IDLE_PARAMETERS = 10  # what the idle window's instances cache (as the polling row's fleet)
PROFILE_CHANGES = 30  # rollouts of the largest fleet run again under py-spy, after the measured ones


class Rollouts:
    """Reads ConfigRefresh objects with the kubernetes client (faster than kubectl in a poll loop)."""

    def __init__(self, stack: Stack) -> None:
        from kubernetes import client

        self._api_client = stack.control_plane.api_client()
        self._api = client.CustomObjectsApi(self._api_client)
        self._namespace = stack.namespace

    def all(self) -> list[dict[str, Any]]:
        answer: Any = self._api.list_namespaced_custom_object(GROUP, VERSION, self._namespace, REFRESHES)
        items: list[dict[str, Any]] = answer["items"]
        return items

    def of(self, name: str) -> list[dict[str, Any]]:
        return [item for item in self.all() if item["spec"]["parameter"]["name"] == name]

    def wait_final(self, name: str, version: int, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.of(name):
                if (
                    item["spec"]["parameter"].get("version") == version
                    and (item.get("status") or {}).get("phase") in FINAL
                ):
                    return item
            time.sleep(0.05)
        raise TimeoutError(f"{name} v{version} not final within {timeout:.0f} s")

    def close(self) -> None:
        self._api_client.close()  # type: ignore[no-untyped-call]


def reads(counts: dict[str, int]) -> int:
    return sum(counts.get(action, 0) for action in READS)


def ssm_only(counts: dict[str, int]) -> dict[str, int]:
    return {key: value for key, value in sorted(counts.items()) if key.startswith("ssm:") and value}


def timed_change(stack: Stack, rollouts: Rollouts, name: str, value: str) -> tuple[float, float, float, int]:
    """One PutParameter, until its rollout is final: (PutParameter returned → last ack, commit → last ack)
    in ms, then when PutParameter returned (time.time()) and the version. The commit is the parameter's
    LastModifiedDate (what `status.latencyMs` counts from); the last ack is sent by the slowest instance
    after it applied the change, so the first figure bounds "last instance applied" from above."""
    answer = stack.ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
    returned = time.time()
    item = rollouts.wait_final(name, int(answer["Version"]))
    latency = float(item["status"].get("latencyMs", 0))
    modified = stack.ssm.get_parameter(Name=name)["Parameter"]["LastModifiedDate"].timestamp()
    return modified * 1000 + latency - returned * 1000, latency, returned, int(answer["Version"])


@dataclass
class AckedPath:
    """The pass with no probe running, per change: PutParameter returned → last instance acknowledged
    (ms), and the CPU time the change used in the instances together and in the operator (s), from the
    PutParameter to the rollout's final status."""

    ms: list[float] = field(default_factory=list)
    instances_cpu: list[float] = field(default_factory=list)
    operator_cpu: list[float] = field(default_factory=list)
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    threads: instance_cost.ThreadCpu = field(default_factory=instance_cost.ThreadCpu)

    def floor_ms(self) -> list[float]:
        """Per change, (instances' + operator's CPU) / the machine's cores: the shortest time that work
        can take on this machine however it is scheduled (the fleet row's floor, at this size)."""
        return [
            (fleet + operator) / self.cores * 1000
            for fleet, operator in zip(self.instances_cpu, self.operator_cpu, strict=True)
        ]

    def per_instance_ms(self, instances: int) -> float:
        """The instances' CPU per change at the median, per instance (ms)."""
        return percentile(self.instances_cpu, 50) / instances * 1e3

    def describe_floor(self, instances: int) -> str:
        floor = self.floor_ms()
        return (
            f"the CPU one change used, instances + operator, over the {self.cores} cores: p50"
            f" {fmt_ms(percentile(floor, 50))}, p99 {fmt_ms(percentile(floor, 99))} (instances"
            f" {self.per_instance_ms(instances):.2f} ms each, operator"
            f" {fmt_ms(percentile(self.operator_cpu, 50) * 1e3)}, p50): the floor on this machine"
        )


def acked_path(stack: Stack, rollouts: Rollouts, changes: int) -> AckedPath:
    """PutParameter returned → last instance acknowledged per change, with no probe running (the
    probe's GetConfig calls to every instance share the same 2 cores and would be timed too), and the
    CPU each change cost the instances and the operator."""
    name = f"{stack.local_aws.prefix}bench/path/flag"
    pids = [instance.pid for instance in stack.fleet]
    measured = AckedPath()
    for index in range(changes):
        measured.threads.start(pids)
        operator_before = cpu_seconds(stack.operator.pid)
        put_ms, commit_ms, _, _ = timed_change(stack, rollouts, name, f"acked-{index}")
        measured.operator_cpu.append(cpu_seconds(stack.operator.pid) - operator_before)
        measured.instances_cpu.append(measured.threads.stop())
        if commit_ms <= 0:
            raise RuntimeError(f"rollout of change {index} has no status.latencyMs")
        measured.ms.append(put_ms)
    return measured


def whole_path(stack: Stack, rollouts: Rollouts, changes: int) -> dict[str, Any]:
    ssm = stack.local_aws.client("ssm")
    name = f"{stack.local_aws.prefix}bench/path/flag"
    ssm.put_parameter(Name=name, Value="warm-up", Type="String", Overwrite=True)
    version = int(ssm.get_parameter(Name=name)["Parameter"]["Version"])
    rollouts.wait_final(name, version)
    probe = Probe([instance.config_address for instance in stack.fleet])
    try:
        stack.local_aws.reset_call_counts()
        commit_ms: list[float] = []
        missing_latency = 0
        phases: Counter[str] = Counter()
        finals: list[dict[str, Any]] = []
        for index in range(changes):
            answer = ssm.put_parameter(Name=name, Value=f"value-{index}", Type="String", Overwrite=True)
            write = probe.track(name, int(answer["Version"]), time.monotonic())
            probe.wait(timeout=60, writes=[write])
            finals.append(rollouts.wait_final(name, int(answer["Version"])))
            status = finals[-1]["status"]
            phases[status["phase"]] += 1
            if status.get("latencyMs") is None:
                missing_latency += 1
            else:
                commit_ms.append(float(status["latencyMs"]))
        counts = stack.local_aws.call_counts()
    finally:
        probe.close()
    return {
        "acked": acked_path(stack, rollouts, changes),
        "staleness": summarize(probe.observations),
        "last_ms": [value * 1000 for value in last_per_write(probe.observations).values()],
        "commit_ms": commit_ms,
        "missing_latency": missing_latency,
        "phases": phases,
        "counts": counts,
        "reads": reads(counts),
        "finals": finals,
    }


def profile_rollouts(stack: Stack, rollouts: Rollouts, changes: int) -> scale_profile.Profile | None:
    """`changes` more changes to the whole path's key while py-spy samples the operator (after the measured
    ones: the profiler's CPU stays out of the reported figures)."""
    ssm = stack.local_aws.client("ssm")
    name = f"{stack.local_aws.prefix}bench/path/flag"
    assert stack.operator.pid is not None

    def body() -> int:
        for index in range(changes):
            answer = ssm.put_parameter(Name=name, Value=f"profiled-{index}", Type="String", Overwrite=True)
            rollouts.wait_final(name, int(answer["Version"]))
        return changes

    with tempfile.TemporaryDirectory(prefix="bench-path-profile-") as scratch:
        return scale_profile.profiled(stack.operator.pid, body, Path(scratch) / "path-operator.txt")


def extra_keys(stack: Stack, rollouts: Rollouts, total: int) -> int:
    """Write parameters until the stack holds `total` (the idle window's cache); returns how many exist."""
    ssm = stack.local_aws.client("ssm")
    found = ssm.get_parameters_by_path(Path=stack.local_aws.prefix, Recursive=True, MaxResults=10)
    held = len(found["Parameters"])
    for index in range(max(0, total - held)):
        name = f"{stack.local_aws.prefix}bench/idle/key-{index}"
        version = int(ssm.put_parameter(Name=name, Value="idle", Type="String", Overwrite=True)["Version"])
        rollouts.wait_final(name, version)
    return max(total, held)


def idle_cost(stack: Stack, *, seconds: float, speedup: int, parameters: int) -> dict[str, Any]:
    """Reads while nothing changes, with the TTL net and resync shortened `speedup` times (see the module
    docstring); the instances were started with --ttl-seconds TTL_DEFAULT / speedup."""
    resync = RESYNC_DEFAULT // speedup
    stack.kubectl(
        "patch",
        "configroute",
        stack.route,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"resync": {"intervalSeconds": resync}}}),
    )
    stack.local_aws.reset_call_counts()
    time.sleep(seconds)
    counts = stack.local_aws.call_counts()
    measured = {action: counts.get(action, 0) for action in READS}
    per_minute = sum(measured.values()) / seconds * 60
    return {
        "seconds": seconds,
        "speedup": speedup,
        "ttl_s": TTL_DEFAULT / speedup,
        "resync_s": resync,
        "parameters": parameters,
        "instances": len(stack.fleet),
        "by_action": measured,
        "per_minute_measured": per_minute,
        "per_minute": per_minute / speedup,
        "ttl_per_minute": measured["ssm:GetParameters"] / seconds * 60 / speedup,
        "resync_per_minute": measured["ssm:GetParametersByPath"] / seconds * 60 / speedup,
        "push_reads": measured["ssm:GetParameter"],
    }


def idle_check(idle: dict[str, Any]) -> Check:
    """The idle row against its target: 0 from the push path; the periodic readers reported beside it."""
    return Check(
        what=f"Parameter Store calls while idle ({idle['instances']} instances + operator)",
        target="0 from the push path; the resync pass and each instance's TTL safety net reported beside it",
        measured=(
            f"push path (GetParameter) {idle['push_reads']} in {idle['seconds']:.0f} s; all reads"
            f" {idle['per_minute']:.1f}/min at the default intervals (TTL safety net"
            f" {idle['ttl_per_minute']:.1f}, resync {idle['resync_per_minute']:.1f}), with"
            f" {idle['parameters']} parameters cached; counted over {idle['seconds']:.0f} s with both"
            f" intervals shortened {idle['speedup']}x (TTL {idle['ttl_s']:g} s, resync {idle['resync_s']} s)"
            " and the rate scaled back"
        ),
        met=idle["push_reads"] == 0,
    )


def burst_check(b: dict[str, Any]) -> Check:
    """The burst row against its target. The row is about a burst of at most BURST_SECONDS: writes that
    took longer (a stalled machine, a slow moto) do not show the bound, so the row is then not met, and
    says why, whatever the fan-outs."""
    in_time = b["seconds"] <= BURST_SECONDS
    return Check(
        what=f"{b['writes']} writes to one key in 1-{BURST_SECONDS:g} s",
        target=f"≤ {BURST_FAN_OUTS} fan-outs, final value everywhere, no regression",
        measured=(
            f"writes took {b['seconds']:.2f} s"
            f"{'' if in_time else f' (longer than {BURST_SECONDS:g} s: not the burst the row names)'};"
            f" {b['fanned_out']} fan-outs ({b['rollouts']} ConfigRefreshes:"
            f" {', '.join(f'{k} {v}' for k, v in b['phases'].items())}); final value on"
            f" {'every' if b['everywhere'] else 'NOT every'} instance;"
            f" {len(b['regressions'])} regressions in {b['samples']} samples"
        ),
        met=in_time and b["fanned_out"] <= BURST_FAN_OUTS and b["everywhere"] and not b["regressions"],
    )


def burst(stack: Stack, rollouts: Rollouts, writes: int = 100) -> dict[str, Any]:
    ssm = stack.local_aws.client("ssm")
    name = f"{stack.local_aws.prefix}bench/burst/key"
    samplers = [stack.fleet[0], stack.fleet[len(stack.fleet) // 2], stack.fleet[-1]]
    stop = threading.Event()
    regressions: list[str] = []
    samples = [0]

    def sample() -> None:
        highest = {instance.instance_id: 0 for instance in samplers}
        while not stop.is_set():
            for instance in samplers:
                try:
                    seen = int(instance.get_config(name, timeout=2).version)
                except grpc.RpcError:
                    continue
                samples[0] += 1
                if seen < highest[instance.instance_id]:
                    regressions.append(
                        f"{instance.instance_id}: v{seen} after v{highest[instance.instance_id]}"
                    )
                highest[instance.instance_id] = max(highest[instance.instance_id], seen)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stack.local_aws.reset_call_counts()
    started = time.monotonic()
    last = 0
    for index in range(writes):
        due = started + index / writes
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        last = int(
            ssm.put_parameter(Name=name, Value=f"burst-{index}", Type="String", Overwrite=True)["Version"]
        )
    took = time.monotonic() - started
    # settle: the rollout of the last version is final and nothing for this key is still running
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        items = rollouts.of(name)
        if (
            items
            and all((i.get("status") or {}).get("phase") in FINAL for i in items)
            and any(i["spec"]["parameter"].get("version") == last for i in items)
        ):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    sampler.join(10)
    counts = stack.local_aws.call_counts()
    items = rollouts.of(name)
    values = []
    for instance in stack.fleet:
        entry = instance.get_config(name)
        values.append((entry.value, int(entry.version)))
    return {
        "writes": writes,
        "seconds": took,
        "last_version": last,
        "rollouts": len(items),
        "phases": Counter((i.get("status") or {}).get("phase", "?") for i in items),
        "fanned_out": sum(1 for i in items if (i.get("status") or {}).get("targets")),
        "everywhere": all(value == (f"burst-{writes - 1}", last) for value in values),
        "regressions": regressions,
        "samples": samples[0],
        "reads": reads(counts),
    }


INSTANCE_COST_GAP = 0.05  # seconds between two Refresh calls: the instance goes idle in between


def instance_costs(
    stack: Stack, acked: AckedPath, *, size: int, changes: int, calls: int
) -> tuple[list[tuple[list[str], list[list[str]]]], list[str]]:
    """Where an instance's CPU per change goes (bench/instance_cost.py): the no-probe pass's CPU by
    thread, per instance and change; then one instance called directly, back to back and with a gap,
    with nothing else running; then the gapped calls under py-spy. Returns the tables and the notes."""
    target = stack.fleet[0]
    name = f"{stack.local_aws.prefix}bench/path/instance-cost"
    versions = itertools.count(1)
    warm = instance_cost.refresh_cost(target, name, versions, calls=calls, gap=0.0)
    woken = instance_cost.refresh_cost(
        target, name, versions, calls=max(20, calls // 5), gap=INSTANCE_COST_GAP
    )
    say(f"  instance cost: {instance_cost.describe([warm, woken])}")
    gap_ms = f"{INSTANCE_COST_GAP * 1e3:.0f} ms"
    rows = [
        instance_cost.cost_row(
            f"each of {size} instances, per change (the no-probe pass: all of them at once on the machine's"
            f" {acked.cores} cores)",
            f"{changes} changes x {size}",
            acked.threads.per(changes * size),
        ),
        instance_cost.cost_row(
            f"one of them, called directly {gap_ms} apart (idle in between), nothing else running",
            str(woken.calls),
            woken.ms,
        ),
        instance_cost.cost_row(
            "one of them, called directly back to back (stays warm), nothing else running",
            str(warm.calls),
            warm.ms,
        ),
    ]
    tables: list[tuple[list[str], list[list[str]]]] = [(instance_cost.COST_HEADER, rows)]
    plain = wake_probe.measure([0.0, INSTANCE_COST_GAP], calls=max(20, calls // 5))
    say(f"  plain Python, own process: {wake_probe.describe(plain)}")
    tables.append(
        (
            wake_probe.header(INSTANCE_COST_GAP),
            [
                wake_probe.row(
                    "Refresh on one instance (the rows above: gRPC, TLS, token, handler; whole process)",
                    warm.ms["total"],
                    woken.ms["total"],
                ),
                wake_probe.row(
                    "a plain Python burst with no event loop, gRPC, thread or I/O, in a process of its own"
                    " (bench/wake_probe.py: its thread's CPU, median)",
                    *wake_probe.warm_and_after(plain, INSTANCE_COST_GAP),
                ),
            ],
        )
    )
    with tempfile.TemporaryDirectory(prefix="bench-instance-profile-") as scratch:
        profile = instance_cost.profile_refreshes(
            target,
            name,
            versions,
            calls=max(20, calls * 3 // 10),
            gap=INSTANCE_COST_GAP,
            out=Path(scratch) / "instance.txt",
        )
    if profile is None:
        return tables, ["No profile of the instance: py-spy is missing or could not attach (make install)."]
    tables.append(
        (
            [
                f"where one instance's GIL time goes, Refresh calls {gap_ms} apart (py-spy, native"
                f" frames, {profile.samples} samples)",
                "share of samples",
            ],
            instance_cost.profile_rows(profile),
        )
    )
    return tables, [INSTANCE_COST_NOTE]


def run(
    *,
    sizes: list[int],
    changes: int,
    idle_seconds: float,
    idle_speedup: int,
    plots: Path,
    instance_calls: int = 1000,
) -> tuple[RowResult, dict[str, Any]]:
    result = RowResult(title="Whole path on the local stack", method=__doc__ or "")
    latency_rows: list[list[str]] = []
    read_rows: list[list[str]] = []
    series: dict[int, list[float]] = {}
    extra: dict[str, Any] = {}
    profile_tables: list[tuple[list[str], list[list[str]]]] = []
    for position, size in enumerate(sizes):
        largest = position == len(sizes) - 1
        say(f"  starting the whole stack with {size} config-service instances ...")
        started = time.monotonic()
        # the largest stack also measures idle cost: its instances' TTL net runs shortened (see above)
        service_args = ["--ttl-seconds", f"{TTL_DEFAULT / idle_speedup:g}"] if largest else []
        stack = Stack.start(instances=size, namespace=f"bench-{size}", service_args=service_args)
        say(f"  stack up in {time.monotonic() - started:.0f} s")
        rollouts = Rollouts(stack)
        try:
            # every size runs every change: the smaller one is the staleness comparison's push side
            count = changes
            path = whole_path(stack, rollouts, count)
            last_ms, commit_ms, s = path["last_ms"], path["commit_ms"], path["staleness"]
            series[size] = last_ms
            p = {q: percentile(last_ms, q) for q in (50, 90, 99)}
            no_probe: AckedPath = path["acked"]
            acked = {q: percentile(no_probe.ms, q) for q in (50, 90, 99)}
            floor = no_probe.floor_ms()
            say(
                f"  whole path {size}: PutParameter returned → last instance serves it p50 {p[50]:.0f}"
                f" p90 {p[90]:.0f} p99 {p[99]:.0f} ms over {count} changes; per instance p50"
                f" {s.p50 * 1000:.0f} p99 {s.p99 * 1000:.0f} ms; reads/change {path['reads'] / count:.2f};"
                f" no probe: → last ack p50 {acked[50]:.0f} p90 {acked[90]:.0f} p99 {acked[99]:.0f} ms;"
                f" {no_probe.describe_floor(size)}"
            )
            latency_rows.append(
                [
                    str(size),
                    str(count),
                    fmt_ms(p[50]),
                    fmt_ms(p[90]),
                    fmt_ms(p[99]),
                    f"{fmt_ms(s.p50 * 1000)} / {fmt_ms(s.p99 * 1000)} ({s.samples} samples)",
                    fmt_ms(s.resolution_p50 * 1000),
                    (
                        f"{fmt_ms(percentile(commit_ms, 50))} / {fmt_ms(percentile(commit_ms, 99))}"
                        if commit_ms
                        else "none"
                    )
                    + (f"; {path['missing_latency']} without latencyMs" if path["missing_latency"] else ""),
                    ", ".join(f"{k} {v}" for k, v in path["phases"].items()),
                    f"{fmt_ms(acked[50])} / {fmt_ms(acked[90])} / {fmt_ms(acked[99])} ({count} changes)",
                    f"{fmt_ms(percentile(floor, 50))} / {fmt_ms(percentile(floor, 99))}"
                    f" ({no_probe.per_instance_ms(size):.2f} ms per instance)",
                ]
            )
            read_rows.append(
                [
                    f"{size} real instances",
                    str(count),
                    str(path["reads"]),
                    f"{path['reads'] / count:.2f}",
                    ", ".join(f"{k} {v}" for k, v in ssm_only(path["counts"]).items()),
                ]
            )
            extra.setdefault("reads_per_change", {})[size] = path["reads"] / count
            extra.setdefault("staleness_by_fleet", {})[size] = s
            if largest:
                target = f"p50 ≤ {PATH_100_P50_MS:g} ms, p99 ≤ {PATH_100_P99_MS:g} ms" + (
                    "" if size == 100 else f" (at 100; run at {size})"
                )
                result.checks.append(
                    Check(
                        what=f"PutParameter returns → last of {size} instances applied (local stack)",
                        target=target,
                        measured=(
                            f"→ last ack p50 {fmt_ms(acked[50])}, p90 {fmt_ms(acked[90])}, p99"
                            f" {fmt_ms(acked[99])} ({count} changes, no probe running); with the GetConfig"
                            f" probe on every instance: → last serves it p50 {fmt_ms(p[50])}, p99"
                            f" {fmt_ms(p[99])} (no EventBridge delivery in either; {stack.security_name()});"
                            f" {no_probe.describe_floor(size)}"
                        ),
                        met=acked[50] <= PATH_100_P50_MS and acked[99] <= PATH_100_P99_MS,
                    )
                )
                extra["staleness"] = s
                extra["last_p50_ms"] = p[50]
                extra["last_p99_ms"] = p[99]
                timeline = scale_profile.stages(path["finals"], stack.operator.log_text())
                if timeline:
                    profile_tables.append(scale_profile.stages_table(timeline, f"{size} instances"))
                profile = profile_rollouts(stack, rollouts, PROFILE_CHANGES)
                if profile is not None:
                    profile_tables.extend(scale_profile.profile_tables(profile, f"{size} instances"))
                say("  burst: 100 writes to one key ...")
                b = burst(stack, rollouts)
                extra["burst"] = b
                say(
                    f"  burst: {b['writes']} writes in {b['seconds']:.2f} s → {b['rollouts']} rollouts"
                    f" ({dict(b['phases'])}), fanned out {b['fanned_out']},"
                    f" final everywhere {b['everywhere']},"
                    f" regressions {len(b['regressions'])} in {b['samples']} samples, {b['reads']} reads"
                )
                result.checks.append(burst_check(b))
                held = extra_keys(stack, rollouts, IDLE_PARAMETERS)
                say(
                    f"  idle window {idle_seconds:.0f} s, {held} parameters, TTL and resync shortened"
                    f" {idle_speedup}x ..."
                )
                quiet = idle_cost(stack, seconds=idle_seconds, speedup=idle_speedup, parameters=held)
                extra["idle_cost"] = quiet
                say(
                    f"  idle: {quiet['by_action']} in {idle_seconds:.0f} s → {quiet['per_minute']:.1f}"
                    " reads/min at the default intervals"
                )
                result.checks.append(idle_check(quiet))
                say("  where an instance's CPU per change goes ...")
                cost_tables, cost_notes = instance_costs(
                    stack, no_probe, size=size, changes=count, calls=instance_calls
                )
                profile_tables += cost_tables
                result.notes += cost_notes
        finally:
            rollouts.close()
            stack.stop()
    result.tables.append(
        (
            [
                "instances",
                "changes",
                "p50 (PutParameter returned → last instance serves it)",
                "p90",
                "p99",
                "per instance p50 / p99",
                "probe resolution (median)",
                "operator: commit → last ack p50 / p99",
                "phases",
                "no probe: PutParameter returned → last ack p50 / p90 / p99",
                "no probe: the change's CPU (instances + operator) ÷ the cores, p50 / p99",
            ],
            latency_rows,
        )
    )
    result.tables.append(
        (["fleet", "changes", "Parameter Store reads", "per change", "all ssm calls by action"], read_rows)
    )
    if "idle_cost" in extra:
        quiet = extra["idle_cost"]
        result.tables.append(
            (
                [
                    "idle: fleet",
                    "parameters cached",
                    "window",
                    "intervals (shortened)",
                    "reads counted, by action",
                    "reads/min measured",
                    "reads/min at the defaults (÷ speedup)",
                ],
                [
                    [
                        f"{quiet['instances']} instances + operator",
                        str(quiet["parameters"]),
                        f"{quiet['seconds']:.0f} s",
                        f"TTL {quiet['ttl_s']:g} s, resync {quiet['resync_s']} s ({quiet['speedup']}x)",
                        ", ".join(f"{k} {v}" for k, v in quiet["by_action"].items()),
                        f"{quiet['per_minute_measured']:.1f}",
                        f"{quiet['per_minute']:.1f} (TTL net {quiet['ttl_per_minute']:.1f},"
                        f" resync {quiet['resync_per_minute']:.1f})",
                    ]
                ],
            )
        )
    result.tables += profile_tables
    if profile_tables:
        result.notes.append(scale_profile.PROFILE_NOTE)
    result.notes.append(NOTE)
    result.notes.append(EVENTBRIDGE_NOTE)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for size, values in series.items():
        ordered = sorted(values)
        axis.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=f"{size} instances")
    axis.axvline(PATH_100_P50_MS, color="grey", linestyle=":", label="p50 target")
    axis.axvline(PATH_100_P99_MS, color="red", linestyle=":", label="p99 target")
    axis.set_xlabel("PutParameter returned → last instance serves it (ms)")
    axis.set_ylabel("fraction of changes")
    axis.set_title("Whole path, local stack (CDF)")
    axis.legend()
    figure.tight_layout()
    path_png = plots / "whole_path.png"
    figure.savefig(path_png, dpi=110)
    plt.close(figure)
    result.plots.append(path_png)
    return result, extra
