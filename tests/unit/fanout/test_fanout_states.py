"""`FanOut.states` (anti-entropy's GetState calls) against in-process grpc.aio servers: what each instance
holds, the refreshes' circuit breakers, and the refreshes' rules for tokens."""

from __future__ import annotations

import datetime
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from configrefresh_api.versions import VersionKey
from refresh_operator.fanout import BreakerRegistry, BreakerState, ChannelPool, FanOut, RefreshPolicy, Target
from refresh_operator.fanout.states import Held

T0 = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)


class Holder(pb_grpc.RefreshServiceServicer):
    def __init__(self, version: int) -> None:
        self.version = version
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def Refresh(self, request: pb.RefreshRequest, context: Any) -> pb.RefreshResponse:
        raise NotImplementedError("these tests call GetState only")

    async def GetState(self, request: pb.GetStateRequest, context: Any) -> pb.GetStateResponse:
        self.requests.append((request.name_prefix, dict(context.invocation_metadata())))
        state = pb.ParameterState(name="/app/a", version=self.version, deleted=False)
        state.last_modified.FromDatetime(T0)
        return pb.GetStateResponse(instance_id="x", parameters=[state])


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Holder], Awaitable[Target]]]:
    servers: list[Any] = []

    async def start(holder: Holder) -> Target:
        server = grpc.aio.server()
        pb_grpc.add_RefreshServiceServicer_to_server(holder, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return Target(f"i-{len(servers)}", f"127.0.0.1:{port}")

    yield start
    for server in servers:
        await server.stop(grace=None)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def channels() -> AsyncIterator[ChannelPool]:
    pool = ChannelPool()
    yield pool
    await pool.aclose()


async def test_each_instance_answers_what_it_holds_and_a_dead_one_is_none(
    serve: Callable[[Holder], Awaitable[Target]], channels: ChannelPool
) -> None:
    holder = Holder(3)
    alive = await serve(holder)
    dead = Target("i-dead", f"127.0.0.1:{closed_port()}")
    fanout = FanOut(channels=channels, breakers=BreakerRegistry())
    states = await fanout.states([alive, dead], name_prefix="/app/", policy=RefreshPolicy(timeout_seconds=2))
    assert states == {alive.instance_id: {"/app/a": Held(VersionKey(T0, 3), deleted=False)}, "i-dead": None}
    assert holder.requests[0][0] == "/app/"


async def test_an_unreachable_instance_counts_against_its_breaker_and_an_open_one_is_not_called(
    serve: Callable[[Holder], Awaitable[Target]], channels: ChannelPool
) -> None:
    dead = Target("i-dead", f"127.0.0.1:{closed_port()}")
    breakers = BreakerRegistry(failure_threshold=2, cool_down_seconds=3600)
    fanout = FanOut(channels=channels, breakers=breakers)
    policy = RefreshPolicy(timeout_seconds=2)
    for _ in range(2):
        assert await fanout.states([dead], name_prefix="/app/", policy=policy) == {"i-dead": None}
    assert breakers.state(dead.address) is BreakerState.OPEN

    holder = Holder(3)
    alive = await serve(holder)
    breakers.get(alive.address).record_failure()
    breakers.get(alive.address).record_failure()  # open: skipped without a call
    assert await fanout.states([alive], name_prefix="/app/", policy=policy) == {alive.instance_id: None}
    assert holder.requests == []


async def test_a_token_goes_as_the_refreshes_send_it_and_never_in_clear(
    serve: Callable[[Holder], Awaitable[Target]], channels: ChannelPool, tmp_path: Path
) -> None:
    holder = Holder(1)
    alive = await serve(holder)
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    fanout = FanOut(channels=channels, breakers=BreakerRegistry())
    refused = await fanout.states([alive], name_prefix="/app/", policy=RefreshPolicy(token_file=str(token)))
    assert refused == {}
    assert holder.requests == []
    opted_out = RefreshPolicy(token_file=str(token), allow_plaintext=True)
    assert await fanout.states([alive], name_prefix="/app/", policy=opted_out) != {}
    assert holder.requests[0][1]["authorization"] == "Bearer s3cret"
