"""The one staleness probe: a client asks every instance GetConfig until it serves the version written.

Why one probe for both sides: push and polling must be timed by the same clock and the same client, or
a ratio between them compares two methods rather than two designs. Staleness of one write on one
instance = from the moment PutParameter returned to the benchmark to the moment that instance serves
the version written, or a newer one (a newer write supersedes it; the instance is then no longer
stale with respect to this one).

How: every (instance, parameter) with a pending write is asked GetConfig on its own clock, at most one
call in flight and one call per `period` (PERIOD, the same on both sides), stretched when many targets
are pending so that the probe sends at most RATE calls a second in all (its load is bounded whatever the
fleet: 100 instances get one call per 100 ms each, 20 instances x 10 parameters one per 200 ms). The
first calls of a write are spread over one such period, so the instances are not all asked at once.
Each answer is stamped with its send and receive times. For a pending write of version v on instance
i, the serving moment lies after the send time of the last probe that still saw an older version (or
after the write, if later) and before the receive time of the first probe that saw v or newer: the
probe records both bounds, `low` and `high`, as seconds after PutParameter returned. `high` is what a
client could have observed; `high - low` is the probe's resolution, about one period plus one call. A
ratio between two designs is taken from the slower side's `low` and the faster side's `high`, so the
probe's resolution can only shrink it.

Why a clock per instance rather than rounds over all of them (as until issue 20): a round ends with its
slowest answer, and push ran its rounds back to back, so the probe asked every instance as fast as the
machine answered, a load the measurement then timed. Measured at 20 instances on 2 cores, 30 changes
each way, alternating: the operator's commit → last acknowledgment went from p50 63 / p99 81 ms with no
probe to 91 / 196 ms under back-to-back rounds, and to 73 / 92 ms under this probe.

The probe's own load lands on the same machine as the instances and, for push, the operator: it slows
both sides, not one.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import grpc

from bench.common import percentile
from configrefresh.v1 import config_service_pb2, config_service_pb2_grpc

PERIOD = 0.05  # s between two GetConfig to one (instance, parameter): both sides' resolution
RATE = 1000.0  # GetConfig per second in all, at most: the probe's own load on the machine it times


@dataclass(frozen=True)
class Observation:
    """One write seen on one instance: seconds after PutParameter returned, as bounds."""

    write: int  # the write's index, as `Probe.track` returned it
    instance: int  # index into the probe's addresses
    low: float
    high: float


@dataclass
class _Pending:
    write: int
    version: int
    written: float  # monotonic, when PutParameter returned
    low: float = 0.0  # latest send time of a probe that still saw an older version, relative


@dataclass(frozen=True)
class Summary:
    """Percentiles of per-instance staleness (high bound) and of the low bound, in seconds."""

    samples: int
    p50: float
    p90: float
    p99: float
    max: float
    p50_low: float
    p99_low: float
    resolution_p50: float  # median (high - low): how finely the probe timed the serving moment


def summarize(observations: Sequence[Observation]) -> Summary:
    """p50/p90/p99/max over every (write, instance) observation; the low bound's p50/p99 beside them."""
    if not observations:
        raise ValueError("no observations")
    high = [o.high for o in observations]
    low = [o.low for o in observations]
    return Summary(
        samples=len(observations),
        p50=percentile(high, 50),
        p90=percentile(high, 90),
        p99=percentile(high, 99),
        max=max(high),
        p50_low=percentile(low, 50),
        p99_low=percentile(low, 99),
        resolution_p50=percentile([o.high - o.low for o in observations], 50),
    )


def last_per_write(observations: Iterable[Observation]) -> dict[int, float]:
    """Per write: when the last instance served it (the max of `high` over the instances)."""
    last: dict[int, float] = {}
    for o in observations:
        last[o.write] = max(last.get(o.write, 0.0), o.high)
    return last


def schedule(*, keys: int, writes: int, duration: float, rng: random.Random) -> list[tuple[float, int]]:
    """`writes` writes spread over `keys` keys, each at its own uniformly random moment in [0, duration).

    Every write's moment is drawn independently (no grid, no spacing), so writes land at random points
    of every instance's poll cycle, whatever that cycle is; keys take turns so each gets writes/keys
    (±1). Returns (seconds from the start, key index), sorted by time.
    """
    if keys < 1 or writes < 0 or duration <= 0:
        raise ValueError("keys ≥ 1, writes ≥ 0 and duration > 0 are required")
    return sorted((rng.uniform(0.0, duration), index % keys) for index in range(writes))


class ProbeTimeout(RuntimeError):
    """Some instances did not serve a write within the time allowed."""


@dataclass
class _Target:
    """One (instance, parameter) with writes still pending: at most one GetConfig in flight."""

    items: list[_Pending]
    due: float  # monotonic: when the next GetConfig may be sent
    in_flight: bool = False


@dataclass
class Probe:
    """GetConfig on every instance with a pending write, each on its own clock (see the module docstring).

    `addresses`: each instance's ConfigService host:port (loopback mode: no credentials needed).
    `period`: shortest time between two GetConfig sent to the same (instance, parameter); the same on
    both sides of a comparison, so that both are timed as finely and loaded alike.
    `rate`: most GetConfig per second in all; with more than period x rate targets pending, each is
    asked less often than once per period.
    """

    addresses: Sequence[str]
    period: float = PERIOD
    rate: float = RATE
    call_timeout: float = 2.0
    observations: list[Observation] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.period <= 0 or self.rate <= 0:
            raise ValueError("period and rate must be > 0: a probe without them would spin on every instance")
        self._channels = [grpc.insecure_channel(address) for address in self.addresses]
        self._stubs = [config_service_pb2_grpc.ConfigServiceStub(channel) for channel in self._channels]
        self._targets: dict[tuple[int, str], _Target] = {}
        self._writes = 0
        self._lock = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="staleness-probe", daemon=True)
        self._thread.start()

    # ----- the caller's side ---------------------------------------------------------------------------

    def track(self, name: str, version: int, written: float) -> int:
        """Probe every instance for `name` at `version` (or newer) from now on; returns the write's index.

        `written`: time.monotonic() when PutParameter returned."""
        with self._lock:
            index = self._writes
            self._writes += 1
            count = len(self._stubs)
            spread = self._spacing(len(self._targets) + count)
            for instance in range(count):
                item = _Pending(index, version, written)
                target = self._targets.get((instance, name))
                if target is None:
                    # first probes spread over one period: the instances are not all asked at once
                    due = written + spread * instance / count
                    self._targets[(instance, name)] = _Target([item], due)
                else:
                    target.items.append(item)
            self._lock.notify_all()
            return index

    def pending(self) -> int:
        """(write, instance) pairs not yet observed."""
        with self._lock:
            return sum(len(target.items) for target in self._targets.values())

    def wait(self, timeout: float, writes: Iterable[int] | None = None) -> None:
        """Until every pending write (or the given ones) is observed on every instance."""
        wanted = None if writes is None else set(writes)
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                left = [
                    item.write
                    for target in self._targets.values()
                    for item in target.items
                    if wanted is None or item.write in wanted
                ]
                if not left:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProbeTimeout(
                        f"{len(left)} (write, instance) pairs not served within {timeout:.0f} s"
                    )
                self._lock.wait(min(remaining, 0.5))

    def of(self, write: int) -> list[Observation]:
        with self._lock:
            return [o for o in self.observations if o.write == write]

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._thread.join(10)
        for channel in self._channels:
            channel.close()

    # ----- the probe thread and gRPC's callbacks -------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                ready = self._ready()
                while not ready and not self._stop:
                    self._lock.wait(self._until_next())
                    ready = self._ready()
                if self._stop:
                    return
                for key in ready:
                    self._targets[key].in_flight = True
            for instance, name in ready:
                self._send(instance, name)

    def _spacing(self, targets: int) -> float:
        """Seconds between two calls to one target with `targets` pending: the period, or longer so
        that all of them together stay within the rate."""
        return max(self.period, targets / self.rate)

    def _ready(self) -> list[tuple[int, str]]:
        now = time.monotonic()
        return [key for key, target in self._targets.items() if not target.in_flight and target.due <= now]

    def _until_next(self) -> float | None:
        waiting = [target.due for target in self._targets.values() if not target.in_flight]
        return max(0.0, min(waiting) - time.monotonic()) if waiting else None

    def _send(self, instance: int, name: str) -> None:
        sent = time.monotonic()
        future = self._stubs[instance].GetConfig.future(
            config_service_pb2.GetConfigRequest(name=name), timeout=self.call_timeout
        )
        future.add_done_callback(lambda done: self._answered(instance, name, sent, done))

    def _answered(self, instance: int, name: str, sent: float, future: grpc.Future) -> None:
        got = time.monotonic()
        try:
            version: int | None = int(future.result().entry.version)
        except grpc.RpcError as error:
            # no answer tells nothing about what the instance serves; NOT_FOUND: it has no version yet
            version = 0 if error.code() == grpc.StatusCode.NOT_FOUND else None
        with self._lock:
            target = self._targets[(instance, name)]
            if version is not None:
                target.items = self._settle(instance, target.items, version, sent, got)
            if target.items:
                target.in_flight = False
                target.due = sent + self._spacing(len(self._targets))
            else:
                del self._targets[(instance, name)]
            self._lock.notify_all()

    def _settle(
        self, instance: int, items: list[_Pending], version: int, sent: float, got: float
    ) -> list[_Pending]:
        """Records the writes this answer shows served; returns those still pending."""
        left = []
        for item in items:
            if version >= item.version:
                high = max(0.0, got - item.written)
                self.observations.append(Observation(item.write, instance, min(item.low, high), high))
            else:
                item.low = max(item.low, sent - item.written)
                left.append(item)
        return left
