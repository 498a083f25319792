"""The fan-out against real config_service processes (devstack `service_fleet`) found through Cloud Map
on the local AWS stack: every healthy instance applies, stopped ones fail after their retries, one that
comes back during the retries applies, and a black-holed endpoint fails on its own deadline while the
others finish.

Timings are printed (run with ``-s``), never asserted; the one time bound checked is the rollout deadline
itself, with generous slack, because stopping at the deadline is the behaviour under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from configrefresh.v1 import refresh_service_pb2 as pb
from devstack.aws.local_aws import LocalAws
from devstack.services.fleet import ServiceFleet
from refresh_operator.fanout import (
    BreakerRegistry,
    ChannelPool,
    FanOut,
    RefreshPolicy,
    Result,
    Target,
    TargetOutcome,
    TlsSettings,
    discover_instances,
)

FleetFactory = Callable[..., ServiceFleet]
PREFIX = "/config-service/"


def request(name: str, version: int, value: str) -> pb.RefreshRequest:
    return pb.RefreshRequest(
        refresh_id=f"it-{name.rsplit('/', 1)[-1]}-v{version}",
        parameter_name=name,
        version=version,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE,
        value=value,
        value_type=pb.VALUE_TYPE_STRING,
        scope={"tenant": "acme"},
    )


def register(local_aws: LocalAws, fleet: ServiceFleet, **attributes: str) -> None:
    for instance in fleet:
        local_aws.register_instance(
            instance.instance_id,
            instance.host,
            instance.refresh_port,
            attributes={"tenant": "acme", **attributes},
        )


async def discover(local_aws: LocalAws, **query: str) -> list[Target]:
    return await discover_instances(
        local_aws.client("servicediscovery"),
        namespace=local_aws.namespace_name,
        service=local_aws.service_name,
        query_parameters=query,
    )


def tls_of(fleet: ServiceFleet) -> TlsSettings:
    """The fleet's CA; its serving certificates name config-service.local (a token never goes in clear)."""
    assert fleet.credentials.ca_file is not None
    return TlsSettings(ca_file=str(fleet.credentials.ca_file), server_name="config-service.local")


def token_policy(fleet: ServiceFleet, **overrides: Any) -> RefreshPolicy:
    assert fleet.credentials.token_file is not None
    return RefreshPolicy(token_file=str(fleet.credentials.token_file), tls=tls_of(fleet), **overrides)


def value_on(fleet: ServiceFleet, name: str) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for instance in fleet:
        try:
            values[instance.instance_id] = instance.get_config(name).value
        except grpc.RpcError as error:
            values[instance.instance_id] = error.code().name
    return values


@pytest.fixture
async def fanout() -> AsyncIterator[FanOut]:
    channels = ChannelPool()
    yield FanOut(channels=channels, breakers=BreakerRegistry(failure_threshold=5, cool_down_seconds=1.0))
    await channels.aclose()


async def test_ten_discovered_instances_all_apply_and_hold_the_value(
    local_aws: LocalAws, service_fleet: FleetFactory, fanout: FanOut
) -> None:
    fleet = service_fleet(10, local_aws=local_aws, auth="token", tls=True)
    register(local_aws, fleet)
    targets = await discover(local_aws, tenant="acme")
    assert len(targets) == 10
    name = f"{PREFIX}acme/orders/feature_flag"

    start = time.monotonic()
    outcomes = await fanout.run(targets=targets, request=request(name, 3, "on"), policy=token_policy(fleet))
    last_ack = max(o.acknowledged_at or 0 for o in outcomes)
    print(f"\n10 instances: run() took {(time.monotonic() - start) * 1000:.1f} ms")

    assert {o.target.instance_id: o.result for o in outcomes} == {
        i.instance_id: Result.APPLIED for i in fleet
    }
    assert {(o.version, o.attempts) for o in outcomes} == {(3, 1)}
    assert last_ack > 0
    assert set(value_on(fleet, name).values()) == {"on"}

    again = await fanout.run(targets=targets, request=request(name, 3, "on"), policy=token_policy(fleet))
    assert {o.result for o in again} == {Result.STALE}


async def test_a_wrong_token_is_refused_at_once_as_unauthenticated(
    local_aws: LocalAws, service_fleet: FleetFactory, fanout: FanOut, tmp_path: Any
) -> None:
    fleet = service_fleet(2, local_aws=local_aws, auth="token", tls=True)
    register(local_aws, fleet)
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    outcomes = await fanout.run(
        targets=await discover(local_aws),
        request=request(f"{PREFIX}acme/orders/x", 1, "x"),
        policy=RefreshPolicy(token_file=str(wrong), tls=tls_of(fleet)),
    )
    assert {o.result for o in outcomes} == {Result.FAILED}
    assert {o.attempts for o in outcomes} == {1}
    assert all((o.error or "").startswith("UNAUTHENTICATED") for o in outcomes)


async def test_two_stopped_instances_fail_after_their_retries_and_only_they_do(
    local_aws: LocalAws, service_fleet: FleetFactory, fanout: FanOut
) -> None:
    fleet = service_fleet(10, local_aws=local_aws, auth="token", tls=True)
    register(local_aws, fleet)  # still registered and HEALTHY in Cloud Map: the fan-out finds out itself
    stopped = {fleet[3].instance_id, fleet[7].instance_id}
    await asyncio.gather(asyncio.to_thread(fleet[3].stop), asyncio.to_thread(fleet[7].stop))
    name = f"{PREFIX}acme/orders/db_pool_size"
    policy = token_policy(fleet, timeout_seconds=1.0, max_attempts=3, deadline_seconds=20.0)

    start = time.monotonic()
    outcomes = await fanout.run(
        targets=await discover(local_aws), request=request(name, 1, "32"), policy=policy
    )
    elapsed = time.monotonic() - start
    print(f"\n2 of 10 stopped: run() took {elapsed * 1000:.1f} ms")

    failed = {o.target.instance_id: o for o in outcomes if o.result is Result.FAILED}
    assert set(failed) == stopped
    for outcome in failed.values():
        assert outcome.attempts == 3
        assert outcome.error is not None
        assert outcome.error.startswith("UNAVAILABLE")
        assert outcome.acknowledged_at is None
    assert [o.result for o in outcomes if o.target.instance_id not in stopped] == [Result.APPLIED] * 8
    assert elapsed < policy.deadline_seconds + 5  # the deadline bounds the rollout (generous slack)


async def test_an_instance_restarted_during_the_retries_applies(
    local_aws: LocalAws, service_fleet: FleetFactory, fanout: FanOut
) -> None:
    fleet = service_fleet(3, local_aws=local_aws, auth="token", tls=True)
    register(local_aws, fleet)
    down = fleet[1]
    await asyncio.to_thread(down.stop)
    name = f"{PREFIX}acme/orders/timeout_ms"
    policy = token_policy(
        fleet,
        timeout_seconds=1.0,
        max_attempts=100,
        deadline_seconds=90.0,
        backoff_base_seconds=0.2,
        backoff_max_seconds=1.0,
    )
    first_failures = asyncio.Event()
    done: dict[str, TargetOutcome] = {}

    def note(outcome: TargetOutcome) -> None:
        done[outcome.target.instance_id] = outcome
        if len(done) == 2:
            first_failures.set()

    run = asyncio.create_task(
        fanout.run(
            targets=await discover(local_aws),
            request=request(name, 5, "1500"),
            policy=policy,
            on_outcome=note,
        )
    )
    try:
        await asyncio.wait_for(first_failures.wait(), timeout=30)  # the two live ones answered
        await asyncio.sleep(1.0)  # and the stopped one has been refused a few times
        assert not run.done()
        restarted = time.monotonic()
        down.start()
        outcomes = {o.target.instance_id: o for o in await asyncio.wait_for(run, timeout=120)}
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
    print(f"\nrestarted instance applied {time.monotonic() - restarted:.2f} s after its restart")

    assert outcomes[down.instance_id].result is Result.APPLIED
    assert outcomes[down.instance_id].attempts > 1
    assert {o.result for o in outcomes.values()} == {Result.APPLIED}
    assert down.get_config(name).value == "1500"


async def _black_hole(host: str) -> tuple[asyncio.Server, list[asyncio.StreamWriter]]:
    """A TCP endpoint that accepts connections and never answers (a hung process, a dropped route)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()  # swallow whatever arrives until the peer gives up

    return await asyncio.start_server(accept, host, 0), held


async def test_a_black_holed_target_fails_on_its_deadline_while_the_others_finish_first(
    local_aws: LocalAws, service_fleet: FleetFactory, fanout: FanOut
) -> None:
    fleet = service_fleet(10, local_aws=local_aws, auth="token", tls=True)
    register(local_aws, fleet)
    server, held = await _black_hole("127.0.0.250")
    port = server.sockets[0].getsockname()[1]
    local_aws.register_instance("black-hole", "127.0.0.250", port, attributes={"tenant": "acme"})
    name = f"{PREFIX}acme/orders/retries"
    policy = token_policy(fleet, timeout_seconds=1.5, max_attempts=2, deadline_seconds=10.0)
    finished_at: dict[str, float] = {}
    start = time.monotonic()

    def note(outcome: TargetOutcome) -> None:
        finished_at[outcome.target.instance_id] = time.monotonic() - start

    try:
        targets = await discover(local_aws, tenant="acme")
        assert len(targets) == 11
        outcomes = {
            o.target.instance_id: o
            for o in await fanout.run(
                targets=targets, request=request(name, 2, "4"), policy=policy, on_outcome=note
            )
        }
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()

    others = [instance.instance_id for instance in fleet]
    slowest_other = max(finished_at[i] for i in others)
    print(
        f"\nblack hole: others all acknowledged by {slowest_other * 1000:.1f} ms, "
        f"black hole failed at {finished_at['black-hole'] * 1000:.1f} ms"
    )
    hole = outcomes["black-hole"]
    assert hole.result is Result.FAILED
    assert hole.attempts == 2
    assert hole.error is not None
    # The first call runs into its deadline; once gRPC gives up on the handshake, a retry may instead
    # fail fast with UNAVAILABLE ("timed out before receiving SETTINGS frame"). Either way: no answer.
    assert hole.error.split(":", 1)[0] in {"DEADLINE_EXCEEDED", "UNAVAILABLE"}
    assert [outcomes[i].result for i in others] == [Result.APPLIED] * 10
    assert slowest_other < finished_at["black-hole"]  # nobody waited for the black hole
    assert finished_at["black-hole"] < policy.deadline_seconds + 5


async def test_unhealthy_and_out_of_scope_instances_are_not_refreshed(
    local_aws: LocalAws, service_fleet: FleetFactory, fanout: FanOut
) -> None:
    fleet = service_fleet(4, local_aws=local_aws, auth="token", tls=True)
    register(local_aws, fleet)
    local_aws.register_instance(
        fleet[3].instance_id, fleet[3].host, fleet[3].refresh_port, attributes={"tenant": "globex"}
    )
    local_aws.set_health(fleet[2].instance_id, healthy=False)
    name = f"{PREFIX}acme/orders/banner"
    targets = await discover(local_aws, tenant="acme")
    outcomes = await fanout.run(
        targets=targets, request=request(name, 1, "hello"), policy=token_policy(fleet)
    )
    assert [(o.target.instance_id, o.result) for o in outcomes] == [
        (fleet[0].instance_id, Result.APPLIED),
        (fleet[1].instance_id, Result.APPLIED),
    ]
    assert value_on(fleet, name) == {
        fleet[0].instance_id: "hello",
        fleet[1].instance_id: "hello",
        fleet[2].instance_id: "NOT_FOUND",
        fleet[3].instance_id: "NOT_FOUND",
    }
