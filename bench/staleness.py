"""The one staleness probe: a client asks every instance GetConfig until it serves the version written.

Why one probe for both sides: push and polling must be timed by the same clock and the same client, or
a ratio between them compares two methods rather than two designs. Staleness of one write on one
instance = from the moment PutParameter returned to the benchmark to the moment that instance serves
the version written, or a newer one (a newer write supersedes it; the instance is then no longer
stale with respect to this one).

How: a background thread runs rounds. Each round asks GetConfig once on every (instance, parameter)
that still has a pending write, all calls in flight together (sync gRPC futures, one channel per
instance), and stamps each answer with its send and receive times. For a pending write of version v on
instance i, the serving moment lies after the send time of the last probe that still saw an older
version (or after the write, if later) and before the receive time of the first probe that saw v or
newer: the probe records both bounds, `low` and `high`, as seconds after PutParameter returned. `high`
is what a client could have observed; `high - low` is the probe's resolution. A ratio between two
designs is taken from the slower side's `low` and the faster side's `high`, so the probe's
resolution can only shrink it.

The probe's own load (a round per `interval`, plus the calls' time) lands on the same machine as the
instances and, for push, the operator: it slows both sides, not one.
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
class Probe:
    """GetConfig rounds on every instance with a pending write (see the module docstring).

    `addresses`: each instance's ConfigService host:port (loopback mode: no credentials needed).
    `interval`: shortest time between the starts of two rounds (0: back to back).
    """

    addresses: Sequence[str]
    interval: float = 0.0
    call_timeout: float = 2.0
    observations: list[Observation] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._channels = [grpc.insecure_channel(address) for address in self.addresses]
        self._stubs = [config_service_pb2_grpc.ConfigServiceStub(channel) for channel in self._channels]
        self._pending: dict[tuple[int, str], list[_Pending]] = {}
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
            for instance in range(len(self._stubs)):
                self._pending.setdefault((instance, name), []).append(_Pending(index, version, written))
            self._lock.notify_all()
            return index

    def pending(self) -> int:
        """(write, instance) pairs not yet observed."""
        with self._lock:
            return sum(len(items) for items in self._pending.values())

    def wait(self, timeout: float, writes: Iterable[int] | None = None) -> None:
        """Until every pending write (or the given ones) is observed on every instance."""
        wanted = None if writes is None else set(writes)
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                left = [
                    item.write
                    for items in self._pending.values()
                    for item in items
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

    # ----- the probe thread ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
                targets = list(self._pending)
            started = time.monotonic()
            answered = self._round(targets)
            # a round nobody answered (instances down) waits a little rather than spin
            rest = max(self.interval, 0.0 if answered else 0.05) - (time.monotonic() - started)
            if rest > 0:
                time.sleep(rest)

    def _round(self, targets: list[tuple[int, str]]) -> int:
        """One GetConfig per target, all in flight together; returns how many answered."""
        received: dict[int, float] = {}
        calls = []
        for slot, (instance, name) in enumerate(targets):
            sent = time.monotonic()
            future = self._stubs[instance].GetConfig.future(
                config_service_pb2.GetConfigRequest(name=name), timeout=self.call_timeout
            )
            future.add_done_callback(lambda _f, slot=slot: received.__setitem__(slot, time.monotonic()))
            calls.append((instance, name, sent, future))
        answers = []
        for slot, (instance, name, sent, future) in enumerate(calls):
            try:
                version = int(future.result().entry.version)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    continue  # no answer: tells nothing about what the instance serves
                version = 0
            answers.append((instance, name, sent, received.get(slot, time.monotonic()), version))
        with self._lock:
            for instance, name, sent, got, version in answers:
                items = self._pending.get((instance, name))
                if not items:
                    continue
                left = []
                for item in items:
                    if version >= item.version:
                        high = max(0.0, got - item.written)
                        self.observations.append(Observation(item.write, instance, min(item.low, high), high))
                    else:
                        item.low = max(item.low, sent - item.written)
                        left.append(item)
                if left:
                    self._pending[(instance, name)] = left
                else:
                    del self._pending[(instance, name)]
            self._lock.notify_all()
        return len(answers)
