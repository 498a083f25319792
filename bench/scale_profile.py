"""Where the operator's time goes while it rolls out (issue 20: a row not met shows its profile).

Used by the scale row (bench/scale.py, 1,000 light endpoints) and the path row (bench/path.py, 100 real
config-service processes):

- **profile**: py-spy samples the operator process (bench/pyspy.py: `--nonblocking`, so the operator is
  never paused; `--gil`, so a sample is taken only while a thread holds the interpreter lock, the one
  lock the operator's single event loop needs for every step) while extra rollouts run AFTER the measured
  ones (the profiler's own CPU does not touch the reported latencies). Each sample goes to the first
  bucket whose code is on its stack (BUCKETS, most specific first); "GIL held" is the share of the window
  in which some operator thread held the lock (samples over rate x window), and "operator CPU" its CPU
  time (/proc) over the window, so the buckets can be read as shares of a busy core.
- **stages**: each measured rollout's own timestamps: commit (`spec.parameter.lastModified`, Parameter
  Store's clock), targets discovered (`status.startedAt`, taken after Cloud Map discovery), the fan-out
  (the operator's `fan-out NAME: ... in X ms` log line: FanOut.run start to end), last acknowledgment
  (commit + `status.latencyMs`) and final status composed (`status.completedAt`). Everything before
  "discovered" (event to SQS, the consumer's GetParameter, the ConfigRefresh create, kopf's watch event,
  the handler's start, Cloud Map) is one stage, the profile splits it.
- **builds side by side** (`python -m bench.scale_profile --base-operator [LABEL=]PATH ...`): one stack,
  the endpoints registered once, then operators of each build take turns (the order reversed every
  other round, each a new process with a warm-up change first, SQS polls of 2 s: see COMPARE_ENV) on
  the same route and key; the figures of each build are pooled.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import pyspy
from bench.common import RowResult, cpu_seconds, fmt_ms, percentile, say
from configrefresh_api.groupversion import GROUP, REFRESHES, VERSION
from configrefresh_api.labels import LABEL_VERSION, refresh_selector
from configrefresh_api.phases import TERMINAL_PHASES
from configrefresh_api.times import parse_time
from devstack.stack.operator import OperatorProcess, operator_environment, operator_executable

RATE = 250
"""py-spy samples per second."""

BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("status patches (building the body, JSON, the PATCH call)", ("status_writer.py", "patch_status")),
    (
        "gRPC fan-out (engine, grpc.aio calls, channels)",
        ("refresh_operator/fanout/", "grpc/aio/", "grpc/_channel", "rollouts/wave_runner.py"),
    ),
    ("Cloud Map discovery", ("refresh_operator/cloudmap/",)),
    (
        "consumer and recorder (SQS, GetParameter, ConfigRefresh create)",
        ("refresh_operator/consumer.py", "recorder.py", "coalescing.py", "parameter_store.py", "sqs"),
    ),
    ("boto3 / botocore in threads (Cloud Map, SQS, Parameter Store)", ("botocore/", "boto3/")),
    ("Kubernetes events, other API calls", ("kubernetes/", "urllib3/", "refresh_operator/kube.py")),
    ("kopf (watch streams, handler machinery, its API client)", ("kopf/", "aiohttp/")),
    (
        "rollout orchestration (rollouts/, status)",
        ("refresh_operator/rollouts/", "refresh_operator/status.py"),
    ),
    ("logging", ("logging/",)),
    ("asyncio event loop itself", ("asyncio/",)),
]
"""Samples by the code on their stack; the first bucket that matches wins."""

PROFILE_NOTE = (
    "The stage table: each measured rollout's own timestamps (commit = spec.parameter.lastModified;"
    " targets discovered = status.startedAt, set after Cloud Map discovery; first call = last ack minus"
    " FanOut.run's time from the operator's `fan-out` log line; last ack = commit + status.latencyMs; final"
    " status composed = status.completedAt), p50 and p90 of each span over the measured rollouts. The"
    " profile: py-spy sampling the operator process (nonblocking, only the thread holding the GIL, 250 Hz)"
    " while more rollouts of the same key run after the measured ones; a sample counts for the first bucket"
    " whose code is on its stack (status patches, then the fan-out, Cloud Map, the consumer and recorder,"
    " other boto3 calls (the threads running Cloud Map, SQS and Parameter Store calls), other Kubernetes"
    ' calls, kopf, rollout orchestration, logging, the bare event loop). "GIL held" is how much of the'
    ' window some operator thread held the interpreter lock, "operator CPU" its CPU time over the window.'
)

SCALE_HISTORY_NOTE = (
    "Is the row's move from p99 539 ms (make bench at 1b1f790) to 795 ms (at 7b40450) the operator or the"
    " harness? Operators of four builds took turns on one stack in two runs of"
    " `python -m bench.scale_profile`"
    " (2026-12-06 03:09-03:20 UTC, 2 CPUs, load 4.5-7.6: another engineer's 10,000-endpoint run shared the"
    " machine, so the figures are high; compare within a run). Commit → last ack p50 / p90, and the median"
    " commit → targets discovered / fan-out. Run 1, 60 changes each: d2bc05f 1051 / 1339 ms (674 / 472);"
    " 57d8f94 (main before this row's fixes) 644 / 1123 ms (206 / 415); this branch (e01dea0) 486 / 879 ms"
    " (72 / 390)."
    " Run 2, 40 changes each: 1b1f790 586 / 1003 ms (149 / 464); 57d8f94 736 / 1168 ms (271 / 401);"
    " e01dea0 453 / 644 ms (84 / 340). The fan-out got faster after 1b1f790; what got slower is Cloud Map"
    " discovery at exactly 1,000 instances. DiscoverInstances' reply is then full (1,000 is its ceiling)"
    " and the operator lists the service to be sure nothing was cut. At 1b1f790 that listing called"
    " ListInstances without MaxResults, and moto answers such a call with every instance in one page (AWS"
    " never pages more than 100); since the one cloudmap package (issue 19) it asks for pages of 100, as"
    " AWS serves them: ten pages of instances and ten of health, about 175 ms here (d2bc05f made them one"
    " after the other; the 'speed' merge side by side). So the step is the operator's discovery becoming"
    " faithful to AWS, which the fake had hidden, not the endpoints (1b1f790's harness already served each"
    " endpoint at its own loopback address, one server each). e01dea0 reads the service's InstanceCount"
    " instead (GetService, on the way to the listing): 1,000 instances in a service of 1,000 were not cut,"
    " so no listing (discovery 188 → 20 ms measured alone), and status patches no longer parse the patched"
    " object they get back (JSON decoding of the 1,000-instance object held the GIL during the fan-out)."
    " The second alone, run 3 (03:29 UTC, load 3.3-4.6, 40 changes each): 8312d99 (InstanceCount only)"
    " 556 / 949 ms, fan-out median 405 ms; e01dea0 445 / 626 ms, 376 ms (its rounds' p50s 395-470 ms"
    " against 386-859 ms: a smaller and less certain gain than discovery's)."
    " What remains is mostly the fan-out itself: in the profile below most of the operator's GIL samples"
    " are grpc.aio's own per-call work (UnaryUnaryCall), which the fan-out row's bare gather at 1,000"
    " instances pays as well, with no engine; that gather, on 2 cores shared with the endpoints' processes,"
    " is this row's floor."
)

SCALE_TAIL_NOTE = (
    'Where the tail of "commit → targets discovered" went (issue 20: p50 55 ms, p90 542 ms, one run in'
    " five slow throughout, at 77a3db2). The operator logs each follow-up run of its per-key coalescer"
    " (operator/refresh_operator/coalescing.py: how many changes joined, what the key was doing when the"
    " first came, how long it waited). In rows at 88c064c (the code of 77a3db2 plus that line) a share"
    " of the rollouts had waited about 500 ms (settle_seconds) in a follow-up. It starts when a change"
    " reaches the consumer while the previous run is still in its hold: the harness writes the next change"
    " as soon as it sees the final status, and the operator ends the hold only after that final patch has"
    " returned. That change waited for company and put the key in a burst, and every later sequential"
    " change of the run, arriving within settle_seconds of the previous run's end, was taken as the burst"
    " going on and waited again. Since 56ae377 such a lone change starts as the hold ends (1-17 ms later)"
    " and a lone follow-up ends a burst; only a second such race in a row still waits (twice 500 ms: once"
    " in the 424 rollouts after the fix below). Four rows of this kind taken in turns, after / before /"
    " after / before"
    " (2026-12-06 06:07-06:16 UTC, 2 CPUs, load 4.8-8.1: another engineer's bench and the coordinator's"
    " config-service shared the machine), 212 rollouts each (warm-ups included): rollouts that waited in a"
    " follow-up 2 / 121 / 0 / 55 (races that started one 1 / 14 / 0 / 6); commit → targets discovered"
    " p50/p90 50/106, 541/602, 49/92, 50/569 ms; commit → last ack at the default concurrency p50/p99"
    " 356/713, 871/1137, 371/612, 335/1107 ms. An earlier pair at load 2.2-3.2 (05:58-06:03 UTC): p99"
    " 1024 → 576 ms, discovered p90 550 → 80 ms, follow-ups 64 → 0. What is left of the p99 is the"
    " fan-out's own tail (FanOut.run p90 355-453 ms in the rows after the fix; see the profile), which is"
    " why the row is still not met."
)

SCALE_SETTLED_NOTE = (
    "Two changes to this row's operator since the run at ceab602 (issue 20), measured with operators of"
    " three builds taking turns on one stack (`python -m bench.scale_profile --base-operator ...`, 6 rounds"
    " of 15 changes each, 1,000 endpoints, one call per instance, plaintext; 2026-12-06 09:32-09:36 UTC, 2"
    " CPUs, load 1-4), commit → last ack p50 / p90, targets discovered p50, FanOut.run p50: 3e45a63 (before)"
    " 288 / 337 ms, 47 ms, 232 ms; plus the consumer starting the route's Cloud Map discovery beside its"
    " read and create, and a full reply checked by the remembered service id (cloudmap/prefetch.py,"
    " cloudmap/discovery.py) 269 / 326 ms, 38 ms, 232 ms; plus the garbage collector settled once started"
    " (refresh_operator/collector.py: this run's operator) 237 / 291 ms, 36 ms, 200 ms. The collector's"
    " share, from the operator's own collections in 30 rollouts of this row (gc.callbacks in a probe"
    " outside the operator's code): with the interpreter's defaults 9 full collections, 75 ms each on"
    " average and up to 88 ms, each inside some fan-out; settled, no full collection, one of the middle"
    " generation (37 ms) and 17 young ones (4 to 14 ms)."
)

SCALE_ENDPOINT_COLLECTOR_NOTE = (
    "The endpoints' side (issue 20): each endpoint host settles its garbage collector once its servers"
    " are up, as config-service's serve() now does once bootstrapped (config_service/collector.py). Without"
    " that, one host's full collection stalls its 500 endpoints at once, where a real fleet's instances"
    " each pause alone. Measured with one operator on this row's stack (TLS + token, concurrency 64), the"
    " hosts' collector switched between batches in turn (12 batches of 15 changes, ABBA), commit → last"
    " ack p50 / p90 / p99, interpreter's defaults against settled: 336 / 404 / 459 against 317 / 385 /"
    " 445 ms (2026-12-06 12:41-12:43 UTC, load 0.9-2.3); 551 / 696 / 861 against 469 / 618 / 777 ms"
    " (12:56-12:59 UTC, the same code, load up to 4.3: the machine, not the builds, moved both). The"
    " hosts' own collections in the first run's 90 rollouts each (gc.callbacks in a probe outside the"
    " harness): with the defaults 40 full ones (1,095 ms in all, up to 35 ms) and 386 of the middle"
    " generation (952 ms); settled, none of either, and 24 young ones over 2 ms (up to 17 ms, 300 ms in"
    " all)."
)

FOLLOW_UP_LINE = re.compile(r"Follow-up run of \S+: \d+ change\(s\) joined .*?; starts (\d+) ms after")
HOLD_END_LINE = re.compile(r"Change of \S+ came during the previous run's hold; starts as the hold ends")


def waits_note(log_text: str) -> str:
    """How many of the rollouts in the operator's log waited in a key's follow-up (coalescing.py), and how
    many changes started at the end of the previous run's hold: the stage before "targets discovered"."""
    rollouts = len(FAN_OUT_LINE.findall(log_text))
    waits = sorted(int(ms) for ms in FOLLOW_UP_LINE.findall(log_text))
    handed = len(HOLD_END_LINE.findall(log_text))
    waited = (
        f"{len(waits)} waited in a key's follow-up (median {statistics.median(waits):.0f} ms, longest"
        f" {waits[-1]} ms)"
        if waits
        else "none waited in a key's follow-up"
    )
    return (
        f"Coalescing in this run (the operator's log, warm-up changes included): of {rollouts} rollouts,"
        f" {waited}; {handed} change(s) reached the consumer during the previous rollout's hold and"
        " started as it ended."
    )


COMPARE_ENV = {"CONFIG_REFRESH_POD_SYNC": "false", "CONFIG_REFRESH_WAIT_TIME_SECONDS": "2"}
"""The operators of a side-by-side run. Each is stopped after its turn, and a stopped operator's SQS long
poll stays open in moto until its wait ends: a change made meanwhile went to that dead receive and came
back only after the visibility timeout (30 s). Polls of 2 s are over before the next operator has
started; a long poll returns as soon as a message arrives, so the wait does not change the latency."""

LONG_POLL_SECONDS = 20
"""The SQS wait of an operator with the default settings (the one that makes the route Ready)."""

FAN_OUT_LINE = re.compile(r"fan-out (\S+): (\d+) targets, .*? in ([\d.]+) ms")


@dataclasses.dataclass(frozen=True)
class Profile:
    rollouts: int
    seconds: float
    samples: int
    cpu_seconds: float
    shares: list[tuple[str, float]]
    top: list[tuple[str, float]]

    @property
    def gil_share(self) -> float:
        return self.samples / max(1.0, RATE * self.seconds)


def profiled(pid: int, body: Callable[[], int], out: Path) -> Profile | None:
    """Run `body` (it returns how many rollouts it ran) while py-spy samples `pid`; None without py-spy.
    With BENCH_PROFILE_DIR set, the raw profile (py-spy's collapsed stacks, flamegraph input) is kept
    there under `out`'s name."""
    keep = os.environ.get("BENCH_PROFILE_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        out = Path(keep) / out.name
    before = cpu_seconds(pid)
    with pyspy.recording(pid, out, rate=RATE) as recorded:
        rollouts = body()
    used = cpu_seconds(pid) - before
    if recorded.path is None:
        return None
    return Profile(
        rollouts=rollouts,
        seconds=recorded.seconds,
        samples=pyspy.samples(recorded.path),
        cpu_seconds=used,
        shares=pyspy.shares(recorded.path, BUCKETS),
        top=pyspy.top_own(recorded.path, 10),
    )


def profile_tables(profile: Profile, what: str) -> list[tuple[list[str], list[list[str]]]]:
    """The profile as two report tables: shares by bucket, and the functions with the most own time."""
    window = (
        f"{profile.rollouts} rollouts in {profile.seconds:.1f} s; GIL held {profile.gil_share:.0%} of the"
        f" window, operator CPU {profile.cpu_seconds / max(profile.seconds, 1e-9):.0%} of a core;"
        f" {profile.samples} samples"
    )
    buckets = [[name, f"{share:.0%}"] for name, share in profile.shares if share >= 0.005]
    top = [[_frame(frame), f"{share:.1%}"] for frame, share in profile.top]
    return [
        ([f"where the operator's GIL time goes, {what} ({window})", "share of samples"], buckets),
        ([f"functions with the most own time, {what}", "share of samples"], top),
    ]


def _frame(frame: str) -> str:
    """`func (/long/path/to/pkg/module.py:12)` → `func (pkg/module.py:12)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    parts = where.split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if where else name


# ----- stages ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stage:
    """One rollout's timeline, ms from the commit."""

    discovered: float
    first_call: float | None
    last_ack: float
    completed: float


def fan_out_ms(log_text: str) -> dict[str, float]:
    """FanOut.run's duration per rollout name, from the operator's log."""
    return {m.group(1): float(m.group(3)) for m in FAN_OUT_LINE.finditer(log_text)}


def stage_of(item: dict[str, Any], took: float | None) -> Stage | None:
    """The stages of a final ConfigRefresh; `took`: its FanOut.run duration (ms) from the log, if found."""
    status = item.get("status") or {}
    modified = item["spec"]["parameter"].get("lastModified")
    if not modified or status.get("latencyMs") is None or not status.get("startedAt"):
        return None
    commit = parse_time(modified).timestamp()
    last_ack = float(status["latencyMs"])
    return Stage(
        discovered=(parse_time(status["startedAt"]).timestamp() - commit) * 1000,
        first_call=None if took is None else last_ack - took,
        last_ack=last_ack,
        completed=(parse_time(status["completedAt"]).timestamp() - commit) * 1000,
    )


def stages(items: Sequence[dict[str, Any]], log_text: str) -> list[Stage]:
    """The stages of each final ConfigRefresh in `items` (the operator's log gives the fan-out's time)."""
    took = fan_out_ms(log_text)
    found = (stage_of(item, took.get(item["metadata"]["name"])) for item in items)
    return [stage for stage in found if stage is not None]


def stages_table(timeline: Sequence[Stage], what: str) -> tuple[list[str], list[list[str]]]:
    """p50 and p90 of each stage's duration (the stages of one rollout add up to its total)."""
    spans: dict[str, list[float]] = {
        "commit → targets discovered (event, SQS, GetParameter, create, watch, handler, Cloud Map)": [
            s.discovered for s in timeline
        ],
        "discovered → first call (plan, InProgress patch sent off, event)": [
            s.first_call - s.discovered for s in timeline if s.first_call is not None
        ],
        "fan-out: first call → last acknowledgment (FanOut.run)": [
            s.last_ack - s.first_call for s in timeline if s.first_call is not None
        ],
        "last acknowledgment → final status composed": [s.completed - s.last_ack for s in timeline],
        "commit → last acknowledgment (status.latencyMs)": [s.last_ack for s in timeline],
    }
    rows = [
        [name, fmt_ms(percentile(values, 50)), fmt_ms(percentile(values, 90)), str(len(values))]
        for name, values in spans.items()
        if values
    ]
    return ([f"stage, {what}", "p50", "p90", "rollouts"], rows)


# ----- waiting for rollouts ----------------------------------------------------------------------------


def wait_final(
    custom: Any, namespace: str, name: str, version: int, timeout: float = 120.0
) -> dict[str, Any]:
    """The ConfigRefresh of `name` v`version` once its phase is final. It is found by its labels (one
    object per list, however many rollouts the namespace holds: listing them all every 0.1 s cost the
    API server and this process a share of the machine that grew with every change)."""
    selector = refresh_selector(parameter_name=name) + f",{LABEL_VERSION}={version}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer: Any = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, REFRESHES, label_selector=selector, _request_timeout=30
        )
        for item in answer["items"]:
            if (item.get("status") or {}).get("phase") in TERMINAL_PHASES:
                return dict(item)
        time.sleep(0.05)
    raise TimeoutError(f"{name} v{version} not final within {timeout:.0f} s")


def push_changes(
    custom: Any, ssm: Any, namespace: str, name: str, count: int, label: str = "v"
) -> list[dict[str, Any]]:
    """`count` sequential PutParameters of `name`, each waited for until its rollout is final."""
    finals = []
    for index in range(count):
        answer = ssm.put_parameter(Name=name, Value=f"{label}{index}", Type="String", Overwrite=True)
        finals.append(wait_final(custom, namespace, name, int(answer["Version"])))
    return finals


# ----- two builds side by side -------------------------------------------------------------------------


def compare(
    *, instances: int, changes: int, rounds: int, builds: dict[str, Path]
) -> dict[str, list[dict[str, Any]]]:
    """Final ConfigRefresh objects per build, from `rounds` ABBA rounds of `changes` changes each."""
    from bench import scale

    finals: dict[str, list[dict[str, Any]]] = {label: [] for label in builds}
    logs: dict[str, str] = {label: "" for label in builds}
    with scale.scale_stack("bench-scale", instances, "embedded", processes=2) as stack:
        parts = stack.parts
        aws = parts.local_aws
        first = stack.deploy([scale.route("fleet", aws=aws, prefix=aws.prefix, concurrency=instances)])
        first.stop(grace=5.0)
        time.sleep(
            LONG_POLL_SECONDS + 1
        )  # its long poll (see COMPARE_ENV) ends before anyone changes a thing
        ssm = aws.client("ssm")
        name = f"{aws.prefix}bench/scale/flag"
        order = list(builds.items())
        for round_number in range(rounds):
            for label, executable in order if round_number % 2 == 0 else order[::-1]:
                env = operator_environment(
                    parts.control_plane, aws, dict(COMPARE_ENV), namespace=parts.namespace
                )
                operator = OperatorProcess.launch(
                    namespace=parts.namespace,
                    env=env,
                    log_path=parts.workdir / f"operator-{label.replace(' ', '-')}-{round_number}.log",
                    timeout=180,
                    executable=executable,
                )
                try:
                    push_changes(stack.custom, ssm, parts.namespace, name, 1, label="warm")
                    found = push_changes(stack.custom, ssm, parts.namespace, name, changes)
                finally:
                    operator.stop(grace=5.0)
                logs[label] += operator.log_text()
                finals[label] += found
                latencies = [float((f.get("status") or {}).get("latencyMs") or 0) for f in found]
                say(
                    f"  round {round_number + 1}/{rounds} {label}: commit → last ack p50"
                    f" {percentile(latencies, 50):.0f} ms, max {max(latencies):.0f} ms"
                    f" (load {os.getloadavg()[0]:.2f})"
                )
    for label, items in finals.items():
        for item in items:
            item["fan_out_ms"] = fan_out_ms(logs[label]).get(item["metadata"]["name"])
    return finals


def comparison_result(finals: dict[str, list[dict[str, Any]]], *, instances: int) -> RowResult:
    result = RowResult(
        title=f"Push at {instances:,} instances: two builds side by side", method=__doc__ or ""
    )
    rows = []
    for label, items in finals.items():
        latencies = [
            float(i["status"]["latencyMs"]) for i in items if i["status"].get("latencyMs") is not None
        ]
        found = [s for s in (stage_of(item, item.get("fan_out_ms")) for item in items) if s is not None]
        fan_outs = [s.last_ack - s.first_call for s in found if s.first_call is not None]
        rows.append(
            [
                label,
                str(len(latencies)),
                fmt_ms(percentile(latencies, 50)),
                fmt_ms(percentile(latencies, 90)),
                fmt_ms(max(latencies)),
                fmt_ms(statistics.median(s.discovered for s in found)) if found else "",
                fmt_ms(statistics.median(fan_outs)) if fan_outs else "",
                fmt_ms(statistics.median(s.completed - s.last_ack for s in found)) if found else "",
            ]
        )
        if found:
            result.tables.append(stages_table(found, label))
    result.tables.insert(
        0,
        (
            [
                "build",
                "changes",
                "commit → last ack p50",
                "p90",
                "max",
                "→ discovered p50",
                "fan-out p50",
                "last ack → final status p50",
            ],
            rows,
        ),
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale_profile", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--base-operator",
        action="append",
        required=True,
        metavar="[LABEL=]PATH",
        help="another build's config-refresh-operator (repeatable; LABEL names it in the output)",
    )
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=10, help="measured changes per operator run")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, the order reversed every other one")
    args = parser.parse_args(argv)
    builds: dict[str, Path] = {}
    for given in args.base_operator:
        label, _, path = given.rpartition("=")
        builds[label or f"base {len(builds) + 1}"] = Path(path)
    builds["this tree"] = operator_executable()
    finals = compare(instances=args.instances, changes=args.changes, rounds=args.rounds, builds=builds)
    result = comparison_result(finals, instances=args.instances)
    for header, rows in result.tables:
        print(" | ".join(header))
        for row in rows:
            print(" | ".join(row))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
