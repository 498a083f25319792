"""The staleness probe's pure parts: the write schedule, the summaries, the push-vs-polling check."""

from __future__ import annotations

import itertools
import random
import sys
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench.__main__ import staleness_check  # noqa: E402
from bench.common import percentile  # noqa: E402
from bench.path import idle_check  # noqa: E402
from bench.polling import WRITES_PER_TTL, window  # noqa: E402
from bench.staleness import (  # noqa: E402
    Observation,
    Probe,
    ProbeTimeout,
    last_per_write,
    schedule,
    summarize,
)
from configrefresh.v1 import config_service_pb2, config_service_pb2_grpc  # noqa: E402


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0


def test_schedule_spreads_every_write_over_the_window_and_the_keys() -> None:
    plan = schedule(keys=10, writes=72, duration=135.0, rng=random.Random(1))
    assert len(plan) == 72
    assert [t for t, _ in plan] == sorted(t for t, _ in plan)
    assert all(0.0 <= t < 135.0 for t, _ in plan)
    per_key = [sum(1 for _, k in plan if k == key) for key in range(10)]
    assert min(per_key) >= 7
    assert max(per_key) <= 8


def test_schedule_draws_moments_independently_not_on_a_grid() -> None:
    # uniform moments: over many writes, each tenth of the window gets about a tenth of them
    plan = schedule(keys=3, writes=10_000, duration=1.0, rng=random.Random(2))
    tenths = [sum(1 for t, _ in plan if k / 10 <= t < (k + 1) / 10) for k in range(10)]
    assert all(850 <= count <= 1150 for count in tenths), tenths
    gaps = sorted(b - a for (a, _), (b, _) in itertools.pairwise(plan))
    assert gaps[0] < gaps[-1] / 100  # not evenly spaced


@pytest.mark.parametrize("bad", [{"keys": 0}, {"writes": -1}, {"duration": 0.0}])
def test_schedule_refuses_an_empty_shape(bad: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"keys": 2, "writes": 4, "duration": 1.0, "rng": random.Random(0), **bad}
    with pytest.raises(ValueError, match="are required"):
        schedule(**arguments)


def test_the_polling_window_holds_the_promised_writes_per_ttl() -> None:
    assert WRITES_PER_TTL >= 20
    assert window(45.0, 72) / 45.0 == pytest.approx(72 / WRITES_PER_TTL)


def test_summaries_are_over_every_write_and_instance_and_keep_both_bounds() -> None:
    observations = [
        Observation(write=w, instance=i, low=0.1 * w + 0.01 * i, high=0.1 * w + 0.01 * i + 0.005)
        for w in range(10)
        for i in range(10)
    ]
    s = summarize(observations)
    assert s.samples == 100
    assert s.max == pytest.approx(0.995)
    assert s.p99 == pytest.approx(percentile([o.high for o in observations], 99))
    assert s.p99_low == pytest.approx(percentile([o.low for o in observations], 99))
    assert s.resolution_p50 == pytest.approx(0.005)
    last = last_per_write(observations)
    assert last[3] == pytest.approx(0.3 + 0.09 + 0.005)
    with pytest.raises(ValueError, match="no observations"):
        summarize([])


def _summary(high: float, low: float) -> Any:
    return summarize([Observation(0, 0, low, high)])


def test_the_ratio_divides_the_polling_low_bound_by_the_push_high_bound() -> None:
    push = {"staleness": _summary(high=0.2, low=0.1), "fleet": 100}
    polls = [
        {"ttl": 5.0, "staleness": _summary(high=5.0, low=4.9), "instances": 20},
        {"ttl": 45.0, "staleness": _summary(high=45.0, low=40.0), "instances": 20},
    ]
    check = staleness_check(push, polls)
    assert check is not None
    assert check.met is True
    assert check.measured.startswith("200x lower p99")
    slower = staleness_check({"staleness": _summary(high=0.5, low=0.1)}, polls)
    assert slower is not None
    assert slower.met is False
    assert staleness_check(push, polls[:1]) is None


def test_the_ratio_sets_push_beside_polling_at_the_same_fleet_size_and_shows_the_largest_too() -> None:
    at_20, at_100 = _summary(high=0.1, low=0.05), _summary(high=0.6, low=0.3)
    push = {"staleness": at_100, "fleet": 100, "staleness_by_fleet": {100: at_100, 20: at_20}}
    polls = [{"ttl": 45.0, "staleness": _summary(high=45.0, low=40.0), "instances": 20}]
    check = staleness_check(push, polls)
    assert check is not None
    assert check.met is True  # 40 s / 0.1 s, at 20 instances on both sides
    assert check.measured.startswith("400x lower p99 per instance at the same fleet size")
    assert "at 100 instances push 600 ms over 1 samples: 67x" in check.measured
    # a polling fleet of a size push was not measured at: the largest push fleet, and the text says so
    other = staleness_check(push, [{**polls[0], "instances": 50}])
    assert other is not None
    assert other.met is False
    assert "at push 100, polling 50 instances" in other.measured


def test_every_plan_measures_push_at_the_polling_fleets_size() -> None:
    from bench.__main__ import FULL, QUICK

    for plan in (FULL, QUICK):
        assert plan.poll_instances in plan.path_sizes


def test_idle_is_met_only_when_the_push_path_read_nothing() -> None:
    idle: dict[str, Any] = {
        "instances": 100,
        "seconds": 180.0,
        "speedup": 10,
        "ttl_s": 60.0,
        "resync_s": 30,
        "parameters": 10,
        "per_minute": 12.3,
        "ttl_per_minute": 12.0,
        "resync_per_minute": 0.3,
        "push_reads": 0,
    }
    assert idle_check(idle).met is True
    assert "12.3/min at the default intervals" in idle_check(idle).measured
    assert idle_check({**idle, "push_reads": 1}).met is False


@pytest.mark.parametrize(
    ("count", "q", "rank"),
    [(100, 99, 99), (100, 50, 50), (30, 99, 30), (30, 50, 15), (1000, 99, 990), (7, 0, 1)],
)
def test_percentile_takes_the_nearest_rank(count: int, q: float, rank: int) -> None:
    values = [float(v) for v in range(count, 0, -1)]  # order does not matter
    assert percentile(values, q) == float(rank)


class _Versions(config_service_pb2_grpc.ConfigServiceServicer):
    """A ConfigService that serves whatever version the test sets (NOT_FOUND while it has none)."""

    def __init__(self) -> None:
        self.version = 0
        self.asked = 0
        self.flipping = self.flipped = 0.0  # just before and just after the new version is served

    def set(self, version: int) -> None:
        self.flipping = time.monotonic()
        self.version = version
        self.flipped = time.monotonic()

    def GetConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.asked += 1
        if not self.version:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such parameter")
        entry = config_service_pb2.ConfigEntry(name=request.name, value="v", version=self.version)
        return config_service_pb2.GetConfigResponse(entry=entry)

    def ListConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not used by the probe")


def _serve(count: int) -> tuple[list[grpc.Server], list[_Versions], list[str]]:
    servers, services, addresses = [], [], []
    for _ in range(count):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        service = _Versions()
        config_service_pb2_grpc.add_ConfigServiceServicer_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        services.append(service)
        addresses.append(f"127.0.0.1:{port}")
    return servers, services, addresses


def test_the_probe_brackets_the_moment_each_instance_starts_serving_the_version() -> None:
    servers, services, addresses = _serve(3)
    probe = Probe(addresses)
    try:
        services[0].set(1)  # already at the old version; the others do not have the key yet
        written = time.monotonic()
        write = probe.track("/p/key", 2, written)
        for service in services:
            probe_saw_old = probe.pending()
            service.set(2)
            assert probe_saw_old >= 1
        probe.wait(timeout=30)
        seen = probe.of(write)
        assert sorted(o.instance for o in seen) == [0, 1, 2]
        for o in seen:
            service = services[o.instance]
            assert o.low <= service.flipped - written
            assert service.flipping - written <= o.high
        later = probe.track("/p/key", 2, time.monotonic())  # already served: seen on the first round
        probe.wait(timeout=30, writes=[later])
        assert len(probe.of(later)) == 3
    finally:
        probe.close()
        for server in servers:
            server.stop(None)


def test_an_instance_that_never_answers_is_never_counted_as_serving() -> None:
    servers, services, addresses = _serve(2)
    servers[1].stop(None)  # the second address refuses every call from now on
    probe = Probe(addresses, call_timeout=0.5)
    try:
        services[0].set(3)
        write = probe.track("/p/key", 3, time.monotonic())
        deadline = time.monotonic() + 30
        while probe.of(write) == [] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [o.instance for o in probe.of(write)] == [0]
        assert probe.pending() == 1
        with pytest.raises(ProbeTimeout, match="1 \\(write, instance\\) pairs not served"):
            probe.wait(timeout=0.2)
    finally:
        probe.close()
        servers[0].stop(None)


def _asked_while_pending(instances: int, *, period: float, rate: float) -> tuple[list[int], float]:
    """One write that every instance serves only after 0.5 s: the GetConfig each instance answered
    meanwhile, and the seconds from the write to the last instance seen serving it."""
    servers, services, addresses = _serve(instances)
    probe = Probe(addresses, period=period, rate=rate)
    try:
        for service in services:
            service.set(1)
        started = time.monotonic()
        write = probe.track("/p/key", 2, started)
        time.sleep(0.5)
        for service in services:
            service.set(2)
        probe.wait(timeout=30, writes=[write])
        assert len(probe.of(write)) == instances
        return [service.asked for service in services], time.monotonic() - started
    finally:
        probe.close()
        for server in servers:
            server.stop(None)


def test_the_probe_asks_each_instance_at_most_once_per_period() -> None:
    # the probe's own load is part of what it times: it must not ask faster than its period, however
    # fast the instances answer (back-to-back rounds asked each one hundreds of times a second)
    asked, elapsed = _asked_while_pending(2, period=0.05, rate=1000.0)
    assert all(2 <= count <= elapsed / 0.05 + 2 for count in asked), (asked, elapsed)


def test_the_probe_asks_each_less_often_when_many_are_pending_so_its_rate_stays_bounded() -> None:
    # 4 targets at 40 calls/s in all: each once per 100 ms, not once per 10 ms
    asked, elapsed = _asked_while_pending(4, period=0.01, rate=40.0)
    assert sum(asked) <= elapsed * 40.0 + 2 * len(asked), (asked, elapsed)
    assert all(count >= 2 for count in asked), asked


@pytest.mark.parametrize("bad", [{"period": 0.0}, {"rate": 0.0}])
def test_a_probe_without_a_period_or_a_rate_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="period and rate must be > 0"):
        Probe(["127.0.0.1:1"], period=bad.get("period", 0.05), rate=bad.get("rate", 1000.0))
