"""The fan-out row's configuration: the policy it measures is the operator's own for a chart-shaped route
(TLS + bearer token, the route's default maxConcurrency), its garbage collector is set as the operator's,
and its profile buckets add up."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import fanout_latency as fl  # noqa: E402

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_the_default_concurrency_is_the_one_the_operator_applies_to_a_route_that_leaves_it_unset() -> None:
    from refresh_operator.routes import route_from_object

    route = route_from_object(
        {
            "metadata": {"name": "r", "namespace": "n"},
            "spec": {
                "parameterPrefix": "/config-service/",
                "discovery": {"cloudMap": {"namespace": "ns", "service": "svc"}},
            },
        }
    )
    assert fl.default_max_concurrency() == route.refresh.max_concurrency


def test_the_tls_policy_sends_a_token_over_tls_checked_against_the_route_ca_and_server_name(
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    secured = fl.Secured(fl.TLS_TOKEN, CA, "svc.bench.svc", token)
    policies = fl.concurrency_policies(secured, 1000)
    default, tuned = policies.values()
    assert default.max_concurrency == fl.default_max_concurrency()
    assert tuned.max_concurrency == 1000
    for policy in (default, tuned):
        assert policy.tls is not None
        assert policy.tls.ca_bundle == CA
        assert policy.tls.server_name == "svc.bench.svc"
        assert policy.token_file == str(token)
        assert not policy.allow_plaintext


def test_rollouts_are_measured_with_the_collector_settled_as_the_operator_settles_it() -> None:
    from refresh_operator.collector import YOUNG_THRESHOLD

    thresholds = gc.get_threshold()
    with fl.operator_collector() as frozen:
        assert frozen > 0
        assert gc.get_freeze_count() > 0  # (some of the frozen may have died since)
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0
    # put back when the measurement fails, too
    with pytest.raises(RuntimeError), fl.operator_collector():
        raise RuntimeError("a rollout failed")
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0


def test_a_fleet_within_the_default_concurrency_has_no_tuned_configuration() -> None:
    policies = fl.concurrency_policies(fl.Secured(fl.PLAINTEXT), 10)
    assert list(policies) == [f"default ({fl.default_max_concurrency()})"]
    (policy,) = policies.values()
    assert policy.tls is None
    assert policy.token_file is None


def test_profile_samples_are_bucketed_by_their_innermost_frame() -> None:
    raw = "\n".join(
        [
            "main (x.py:1);BaseEventLoop._run_once (asyncio/base_events.py:1);"
            "FanOut._attempt (refresh_operator/fanout/engine.py:3) 3",
            "main (x.py:1);BaseEventLoop._run_once (asyncio/base_events.py:1);"
            "UnaryUnaryCall._invoke (grpc/aio/_call.py:5);0x1 (grpc/_cython/cygrpc.so);sendmsg (libc.so.6) 5",
            "main (x.py:1);BaseEventLoop._run_once (asyncio/base_events.py:1);"
            "UnaryUnaryCall._invoke (grpc/aio/_call.py:5);0x1 (grpc/_cython/cygrpc.so) 1",
            "main (x.py:1);BaseEventLoop._run_once (asyncio/base_events.py:1);"
            "EpollSelector.select (selectors.py:9) 1",
            "import (x.py:1);<module> (y.py:2) 100",  # outside the event loop: not counted
        ]
    )
    shares = fl.classify(raw)
    assert shares["engine (refresh_operator)"] == pytest.approx(0.3)
    assert shares["grpc: sendmsg (loopback TCP write)"] == pytest.approx(0.5)
    assert shares["grpc: call start and finish"] == pytest.approx(0.1)
    assert shares["waiting for the endpoints (epoll)"] == pytest.approx(0.1)
    assert sum(shares.values()) == pytest.approx(1.0)
