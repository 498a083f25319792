"""The operator's API server session: the same credentials as kopf's default login, a bounded pool.

kopf's own session has no connection limit; with one worker per object, 1,000 ConfigRoutes at start-up
meant up to 1,000 TLS connections at once and ~0.25 MiB each of memory the process kept.
"""

from __future__ import annotations

import datetime

import kopf
import pytest

from refresh_operator.handlers import api_connection_limit, bounded_session


def test_the_pool_holds_every_watch_of_every_namespace_and_room_for_requests() -> None:
    one = api_connection_limit(["team-a"])
    three = api_connection_limit(["team-a", "team-b", "team-c"])
    # ConfigRoutes, ConfigRefreshes and Pods are watched per namespace; each watch holds a connection.
    assert three - one >= 2 * 3
    assert one - 3 >= 16
    assert api_connection_limit(None) == one


def test_the_pool_is_bounded_whatever_the_number_of_objects() -> None:
    assert api_connection_limit(["team-a"]) <= 64


async def test_the_session_carries_kopfs_credentials_with_a_connection_limit() -> None:
    expires = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    info = kopf.ConnectionInfo(
        server="https://127.0.0.1:6443",
        scheme="Bearer",
        token="t0ken",
        default_namespace="team-a",
        priority=30,
        expiration=expires,
    )
    context = bounded_session(info, limit=20)
    session = context.aiohttp_session
    try:
        assert session.connector is not None
        assert session.connector.limit == 20
        assert session.headers["Authorization"] == "Bearer t0ken"
        assert context.server == "https://127.0.0.1:6443"
        assert context.default_namespace == "team-a"
        assert (context.priority, context.expiration) == (30, expires)
    finally:
        await session.close()


@pytest.mark.parametrize("limit", [1, 34])
async def test_the_limit_is_the_one_asked_for(limit: int) -> None:
    context = bounded_session(kopf.ConnectionInfo(server="https://127.0.0.1:1"), limit=limit)
    try:
        assert context.aiohttp_session.connector is not None
        assert context.aiohttp_session.connector.limit == limit
    finally:
        await context.aiohttp_session.close()
