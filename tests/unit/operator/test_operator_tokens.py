"""ServiceAccount tokens per audience: minted once, shared by concurrent callers, renewed before expiry."""

from __future__ import annotations

import asyncio

import pytest

from refresh_operator.fanout.tokens import TokenCache, TokenError


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_one_token_per_audience_and_one_request_in_flight() -> None:
    clock = Clock()
    asked: list[str] = []
    gate = asyncio.Event()

    async def mint(audience: str, expiration: int) -> tuple[str, float]:
        asked.append(audience)
        await gate.wait()
        return f"t-{audience}-{asked.count(audience)}", clock.now + expiration

    cache = TokenCache(mint, expiration_seconds=3600, clock=clock)
    waiting = [asyncio.create_task(cache.token("svc-a")) for _ in range(20)]
    other = asyncio.create_task(cache.token("svc-b"))
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*waiting)) == {"t-svc-a-1"}
    assert (await other).startswith("t-svc-b")
    assert sorted(asked) == ["svc-a", "svc-b"]


async def test_a_token_is_renewed_after_half_its_lifetime() -> None:
    clock = Clock()
    count = 0

    async def mint(audience: str, expiration: int) -> tuple[str, float]:
        nonlocal count
        count += 1
        return f"t{count}", clock.now + expiration

    cache = TokenCache(mint, expiration_seconds=3600, clock=clock)
    assert await cache.token("a") == "t1"
    clock.now += 1799
    assert await cache.token("a") == "t1"
    clock.now += 2
    assert await cache.token("a") == "t2"


async def test_a_failed_renewal_keeps_a_still_valid_token_and_a_failed_first_request_says_why() -> None:
    clock = Clock()
    fail = False

    async def mint(audience: str, expiration: int) -> tuple[str, float]:
        if fail:
            raise RuntimeError("HTTP 403 Forbidden")
        return "t1", clock.now + expiration

    cache = TokenCache(mint, expiration_seconds=3600, clock=clock)
    assert await cache.token("a") == "t1"
    fail = True
    clock.now += 2000
    assert await cache.token("a") == "t1"
    with pytest.raises(TokenError, match="403"):
        await cache.token("b")
