"""Where a config-service instance's CPU per refresh goes: by thread, warm against woken from idle, and
a py-spy profile of the thread that runs Python.

The whole path's floor at 100 instances is mostly the instances' CPU (bench/path.py: the change's CPU
over the cores). This module says what that CPU is, so the floor rests on a measurement:

- `ThreadCpu` reads each thread's run time from /proc/PID/task/TID/schedstat (ns; a thread's own, unlike
  /proc/PID/schedstat, which is the main thread's) and groups it by role: the main thread (the asyncio
  loop, where grpc.aio and every handler run), gRPC core's threads (`event_engine`: polling, TLS,
  HTTP/2), and the rest; the process's CPU-time clock (bench.common.cpu_seconds) gives the total, so
  threads that exited in between still count, under "other".
- `refresh_cost` calls Refresh on one instance over its fleet's TLS and token, either back to back (the
  process stays warm: nothing else runs on the machine meanwhile) or with a gap between calls (it goes
  idle, as each instance does between two changes), and reports the CPU per call by role. The same
  code does the same work either way; the difference is the cost of waking from idle.
- `profile_refreshes` does the gapped calls again under py-spy (native frames, GIL holder only) and
  buckets the samples; the CPU figures come from the unprofiled passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench import pyspy
from bench.common import cpu_seconds
from configrefresh.v1 import refresh_service_pb2 as pb

MAIN = "main thread (asyncio loop: grpc.aio, handlers)"
GRPC_CORE = "gRPC core threads (event_engine: poller, TLS, HTTP/2)"
OTHER = "other threads, exited ones included"
ROLES = (MAIN, GRPC_CORE, OTHER)

PROFILE_BUCKETS = (  # the first bucket whose marker is in a stack takes it: a handler's stack holds the
    # interceptor's frame (auth.py) and may hold logging's, so the narrower buckets come first
    ("logging (the refresh log line)", ("logging/__init__.py", "config_service/logs.py")),
    ("prometheus metrics", ("prometheus_client",)),
    (
        "Refresh handler (validate, apply, swap)",
        ("refresh_servicer.py", "refresher.py", "config_service/cache.py"),
    ),
    ("token check (the interceptor, the handler excluded)", ("config_service/auth.py",)),
    ("change feed, local delivery", ("config_service/changes.py", "config_service/local_delivery.py")),
    ("gRPC waking its poller thread (eventfd write)", ("eventfd_write",)),
    ("gRPC aio server machinery (the rest)", ("grpc/_cython", "cygrpc", "grpc/aio")),
    ("asyncio event loop", ("asyncio/",)),
)


def _role(pid: int, tid: str, name: str) -> str:
    if tid == str(pid):
        return MAIN
    if name.startswith(("event_engine", "grpc")):
        return GRPC_CORE
    return OTHER


def thread_seconds(pid: int) -> dict[str, float]:
    """CPU seconds each role's live threads of `pid` have run so far (empty when the process is gone)."""
    seconds: dict[str, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return seconds
    for task in tasks:
        try:
            name = (task / "comm").read_text().strip()
            run_ns = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread exited meanwhile: the process clock still counts it, under OTHER
        role = _role(pid, task.name, name)
        seconds[role] = seconds.get(role, 0.0) + run_ns / 1e9
    return seconds


@dataclass
class ThreadCpu:
    """CPU seconds by role, summed over processes and over the spans `start`/`stop` bracket."""

    by_role: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ROLES, 0.0))
    _before: dict[int, tuple[float, dict[str, float]]] = field(default_factory=dict)

    def start(self, pids: Iterable[int | None]) -> None:
        self._before = {pid: (cpu_seconds(pid), thread_seconds(pid)) for pid in pids if pid is not None}

    def stop(self) -> float:
        """Add the span since `start` to `by_role`; returns the span's CPU seconds, every process together."""
        span = 0.0
        for pid, (total_before, roles_before) in self._before.items():
            roles_after = thread_seconds(pid)
            total = cpu_seconds(pid) - total_before
            span += total
            counted = 0.0
            for role in (MAIN, GRPC_CORE):
                spent = max(0.0, roles_after.get(role, 0.0) - roles_before.get(role, 0.0))
                self.by_role[role] += spent
                counted += spent
            self.by_role[OTHER] += max(0.0, total - counted)
        self._before = {}
        return span

    @property
    def total(self) -> float:
        return sum(self.by_role.values())

    def per(self, units: int) -> dict[str, float]:
        """Milliseconds by role (and "total") per unit of work."""
        shares = {role: spent / units * 1e3 for role, spent in self.by_role.items()}
        shares["total"] = self.total / units * 1e3
        return shares


class RefreshTarget(Protocol):
    """A fleet instance (devstack.services.fleet.Instance): its pid, and Refresh with the fleet's
    credentials."""

    @property
    def pid(self) -> int | None: ...

    def refresh(self, request: pb.RefreshRequest, *, timeout: float = 10.0) -> pb.RefreshResponse: ...


def _request(name: str, version: int) -> pb.RefreshRequest:
    return pb.RefreshRequest(
        refresh_id=f"bench-instance-cost-{version}",
        parameter_name=name,
        version=version,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE,
        value=f"instance-cost-{version}",
        value_type=pb.VALUE_TYPE_STRING,
    )


def _calls(target: RefreshTarget, name: str, versions: Iterator[int], calls: int, gap: float) -> None:
    """`versions` gives each call a newer version than the last: an older one is answered STALE, unapplied."""
    for _ in range(calls):
        answer = target.refresh(_request(name, next(versions)))
        if answer.result != pb.REFRESH_RESULT_APPLIED:
            raise RuntimeError(f"instance-cost refresh of {name} not applied: {answer}")
        if gap > 0:
            time.sleep(gap)


@dataclass(frozen=True)
class RefreshCost:
    """CPU per Refresh call of one instance, ms by role and "total", over `calls` calls `gap` s apart."""

    calls: int
    gap: float
    ms: dict[str, float]


def refresh_cost(
    target: RefreshTarget, name: str, versions: Iterator[int], *, calls: int, gap: float
) -> RefreshCost:
    """`calls` Refresh calls to `target` for `name` (applied each: every version is new), `gap` seconds
    apart, and the instance's CPU per call by role. The instance must accept `name` (under its prefix);
    the calls add `name` to its cache."""
    if target.pid is None:
        raise RuntimeError("the instance is not running")
    _calls(target, name, versions, 5, 0.0)  # connected and warm before the measured calls
    cpu = ThreadCpu()
    cpu.start([target.pid])
    _calls(target, name, versions, calls, gap)
    cpu.stop()
    return RefreshCost(calls=calls, gap=gap, ms=cpu.per(calls))


@dataclass(frozen=True)
class RefreshProfile:
    """py-spy's buckets for gapped Refresh calls: (bucket, share of GIL samples), the top own frames."""

    samples: int
    shares: list[tuple[str, float]]
    top: list[tuple[str, float]]


def profile_refreshes(
    target: RefreshTarget, name: str, versions: Iterator[int], *, calls: int, gap: float, out: Path
) -> RefreshProfile | None:
    """The gapped calls again while py-spy samples the instance (native frames; it pauses the process
    per sample, so no CPU figure is taken here); None without py-spy."""
    pid = target.pid
    if pid is None:
        return None
    with pyspy.recording(pid, out, rate=1000, native=True) as recorded:
        _calls(target, name, versions, calls, gap)
    if recorded.path is None:
        return None
    return RefreshProfile(
        samples=pyspy.samples(recorded.path),
        shares=pyspy.shares(recorded.path, PROFILE_BUCKETS),
        top=pyspy.top_own(recorded.path, 6),
    )


def cost_row(label: str, refreshes: str, ms: dict[str, float]) -> list[str]:
    """One row of the table `COST_HEADER` heads."""
    return [label, refreshes, f"{ms['total']:.2f} ms", *(f"{ms[role]:.2f} ms" for role in ROLES)]


COST_HEADER = ["instance, how it was called", "refreshes", "CPU per refresh (whole process)", *ROLES]


def profile_rows(profile: RefreshProfile) -> list[list[str]]:
    return [[label, f"{share:.1%}"] for label, share in profile.shares] + [
        [f"own time: {frame}", f"{share:.1%}"] for frame, share in profile.top
    ]


def describe(costs: Sequence[RefreshCost]) -> str:
    """One line for the console: CPU per call, by gap."""
    return "; ".join(f"gap {cost.gap * 1e3:.0f} ms: {cost.ms['total']:.2f} ms per refresh" for cost in costs)
