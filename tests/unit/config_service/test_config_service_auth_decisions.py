"""Authentication decisions per method, the plaintext-token rule, the token file's rotation without
restart, and the bounds on TokenReview (single flight, cache, rate limit)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import grpc
import pytest

from config_service.auth import (
    Authenticator,
    BearerToken,
    CallCredentials,
    Method,
    MutualTls,
    ServiceAccountToken,
    TokenFile,
)
from config_service.loopback import is_loopback_peer
from config_service.tokenreview import TokenBucket, TokenReviews


def call(
    bearer: str | None = None, identities: tuple[str, ...] = (), *, tls: bool = True, loopback: bool = False
) -> CallCredentials:
    return CallCredentials(bearer=bearer, peer_identities=identities, tls=tls, loopback=loopback)


def reviews_of(
    reviewer: Any, *, cache_seconds: float = 60, rate: float = 1000, burst: int = 1000
) -> TokenReviews:
    return TokenReviews(
        reviewer=reviewer,
        audience="cs",
        cache_seconds=cache_seconds,
        cache_size=100,
        rate_per_second=rate,
        burst=burst,
    )


async def test_mutual_tls_allows_listed_identities_and_denies_others() -> None:
    auth = Authenticator([MutualTls(["operator"])])
    assert (await auth.authenticate(call(identities=("operator",))))[0] is None
    assert (await auth.authenticate(call(identities=("intruder",))))[0] is grpc.StatusCode.PERMISSION_DENIED
    assert (await auth.authenticate(call()))[0] is grpc.StatusCode.UNAUTHENTICATED


async def test_bearer_tokens_follow_the_file_as_it_rotates(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old-token\n")
    auth = Authenticator([BearerToken(TokenFile(path))])
    assert (await auth.authenticate(call("old-token")))[0] is None
    assert (await auth.authenticate(call("wrong")))[0] is grpc.StatusCode.UNAUTHENTICATED
    assert (await auth.authenticate(call()))[0] is grpc.StatusCode.UNAUTHENTICATED
    staging = tmp_path / "token.new"
    staging.write_text("new-token\nsecond-token\n")
    os.replace(staging, path)
    assert (await auth.authenticate(call("old-token")))[0] is grpc.StatusCode.UNAUTHENTICATED
    assert (await auth.authenticate(call("new-token")))[0] is None
    assert (await auth.authenticate(call("second-token")))[0] is None


class Reviewer:
    def __init__(self, answers: dict[str, dict[str, Any]]) -> None:
        self.answers = answers
        self.calls = 0

    async def __call__(self, token: str, audience: str) -> dict[str, Any]:
        self.calls += 1
        if token == "boom":
            raise ConnectionError("apiserver down")
        return self.answers.get(token, {"authenticated": False})


async def test_serviceaccount_tokens_are_reviewed_cached_and_judged() -> None:
    reviewer = Reviewer(
        {
            "good": {
                "authenticated": True,
                "audiences": ["cs"],
                "user": {"username": "system:serviceaccount:a:op"},
            },
            "other-sa": {
                "authenticated": True,
                "audiences": ["cs"],
                "user": {"username": "system:serviceaccount:a:x"},
            },
            "other-aud": {
                "authenticated": True,
                "audiences": ["api"],
                "user": {"username": "system:serviceaccount:a:op"},
            },
        }
    )
    method = ServiceAccountToken(reviews=reviews_of(reviewer), allowed_users=["system:serviceaccount:a:op"])
    auth = Authenticator([method])
    assert (await auth.authenticate(call("good")))[0] is None
    assert (await auth.authenticate(call("good")))[0] is None
    assert reviewer.calls == 1, "the second call is answered from the cache"
    assert (await auth.authenticate(call("other-sa")))[0] is grpc.StatusCode.PERMISSION_DENIED
    assert (await auth.authenticate(call("other-aud")))[0] is grpc.StatusCode.UNAUTHENTICATED
    assert (await auth.authenticate(call("forged")))[0] is grpc.StatusCode.UNAUTHENTICATED
    assert (await auth.authenticate(call()))[0] is grpc.StatusCode.UNAUTHENTICATED
    assert (await auth.authenticate(call("boom")))[0] is grpc.StatusCode.UNAVAILABLE


async def test_any_method_that_allows_lets_the_call_through(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("static\n")
    reviewer = Reviewer(
        {
            "sa": {
                "authenticated": True,
                "audiences": ["cs"],
                "user": {"username": "system:serviceaccount:a:op"},
            }
        }
    )
    auth = Authenticator(
        [
            BearerToken(TokenFile(path)),
            ServiceAccountToken(
                reviews=reviews_of(reviewer, cache_seconds=0), allowed_users=["system:serviceaccount:a:op"]
            ),
        ]
    )
    assert (await auth.authenticate(call("static")))[0] is None
    assert (await auth.authenticate(call("sa")))[0] is None
    assert (await auth.authenticate(call("neither")))[0] is grpc.StatusCode.UNAUTHENTICATED


async def test_a_bearer_token_sent_in_clear_from_another_host_is_refused_unseen(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("static\n")
    reviewer = Reviewer({})
    methods: list[Method] = [
        BearerToken(TokenFile(path)),
        ServiceAccountToken(reviews=reviews_of(reviewer), allowed_users=["system:serviceaccount:a:op"]),
    ]
    strict = Authenticator(methods)
    code, verdict = await strict.authenticate(call("static", tls=False))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert "without TLS" in verdict.reason
    assert reviewer.calls == 0, "a token that crossed the network in clear is never sent to TokenReview"
    assert (await strict.authenticate(call("static", tls=True)))[0] is None
    assert (await strict.authenticate(call("static", tls=False, loopback=True)))[0] is None
    opted_out = Authenticator(methods, plaintext_tokens=True)
    assert (await opted_out.authenticate(call("static", tls=False)))[0] is None


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        ("ipv4:127.0.0.1:5000", True),
        ("ipv4:127.0.3.17:5000", True),
        ("ipv6:[::1]:5000", True),
        ("ipv6:[::ffff:127.0.0.1]:5000", True),
        ("ipv6:%5B::1%5D:5000", True),
        ("unix:/run/config.sock", True),
        ("ipv4:10.0.0.7:5000", False),
        ("ipv4:192.0.2.2:5000", False),
        ("ipv6:[fd00::2]:5000", False),
        ("ipv6:[::ffff:10.0.0.1]:5000", False),
        ("", False),
    ],
)
def test_loopback_peers_are_the_whole_127_block_ipv6_loopback_and_unix_sockets(
    peer: str, loopback: bool
) -> None:
    assert is_loopback_peer(peer) is loopback


async def test_group_allow_list_admits_every_serviceaccount_of_a_namespace() -> None:
    reviewer = Reviewer(
        {
            "app": {
                "authenticated": True,
                "audiences": ["cs"],
                "user": {
                    "username": "system:serviceaccount:apps:orders",
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:apps"],
                },
            },
            "stranger": {
                "authenticated": True,
                "audiences": ["cs"],
                "user": {
                    "username": "system:serviceaccount:other:x",
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:other"],
                },
            },
        }
    )
    auth = Authenticator(
        [
            ServiceAccountToken(
                reviews=reviews_of(reviewer), allowed_users=(), allowed_groups=["system:serviceaccounts:apps"]
            )
        ]
    )
    code, verdict = await auth.authenticate(call("app"))
    assert code is None
    assert verdict.principal == "system:serviceaccount:apps:orders"
    assert (await auth.authenticate(call("stranger")))[0] is grpc.StatusCode.PERMISSION_DENIED


class SlowReviewer(Reviewer):
    def __init__(self) -> None:
        super().__init__({})
        self.release = asyncio.Event()

    async def __call__(self, token: str, audience: str) -> dict[str, Any]:
        self.calls += 1
        await self.release.wait()
        return {"authenticated": False}


async def test_concurrent_checks_of_one_token_share_one_tokenreview() -> None:
    reviewer = SlowReviewer()
    reviews = reviews_of(reviewer)
    waiting = [asyncio.ensure_future(reviews.review("same-bogus-token")) for _ in range(50)]
    await asyncio.sleep(0)
    reviewer.release.set()
    answers = await asyncio.gather(*waiting)
    assert reviewer.calls == 1
    assert all(answer == {"authenticated": False} for answer in answers)
    await reviews.review("same-bogus-token")
    assert reviewer.calls == 1, "the negative answer is cached too"


async def test_a_flood_of_distinct_bogus_tokens_is_bounded_by_the_rate_limit() -> None:
    now = [0.0]
    reviewer = Reviewer({})
    reviews = TokenReviews(
        reviewer=reviewer,
        audience="cs",
        cache_seconds=60,
        cache_size=100,
        rate_per_second=5,
        burst=10,
        clock=lambda: now[0],
    )
    auth = Authenticator([ServiceAccountToken(reviews=reviews, allowed_users=["system:serviceaccount:a:op"])])
    codes = [(await auth.authenticate(call(f"bogus-{i}")))[0] for i in range(1000)]
    assert reviewer.calls == 10, "the burst, then nothing until time passes"
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 10
    assert codes.count(grpc.StatusCode.UNAVAILABLE) == 990, "over the limit: retry later, not a verdict"
    now[0] += 2.0
    for i in range(1000, 2000):
        await auth.authenticate(call(f"bogus-{i}"))
    assert reviewer.calls == 20, "2 s at 5/s"


async def test_the_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    reviewer = Reviewer({})
    reviews = TokenReviews(
        reviewer=reviewer,
        audience="cs",
        cache_seconds=10,
        cache_size=3,
        rate_per_second=1000,
        burst=1000,
        clock=lambda: now[0],
    )
    for token in ("a", "b", "c", "d"):
        await reviews.review(token)
    assert reviewer.calls == 4
    await reviews.review("d")
    assert reviewer.calls == 4
    await reviews.review("a")
    assert reviewer.calls == 5, "the least recently used entry was dropped at the size bound"
    now[0] += 11
    await reviews.review("a")
    assert reviewer.calls == 6, "an expired answer is reviewed again"


async def test_errors_are_not_cached() -> None:
    reviewer = Reviewer({})
    auth = Authenticator(
        [ServiceAccountToken(reviews=reviews_of(reviewer), allowed_users=["system:serviceaccount:a:op"])]
    )
    assert (await auth.authenticate(call("boom")))[0] is grpc.StatusCode.UNAVAILABLE
    assert (await auth.authenticate(call("boom")))[0] is grpc.StatusCode.UNAVAILABLE
    assert reviewer.calls == 2


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert bucket.take()
    assert not bucket.take()
    now[0] += 100
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
