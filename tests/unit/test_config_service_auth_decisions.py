"""Authentication decisions per method, and the token file's rotation without restart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc

from config_service.auth import (
    Authenticator,
    BearerToken,
    CallCredentials,
    MutualTls,
    ServiceAccountToken,
    TokenFile,
)


def call(bearer: str | None = None, identities: tuple[str, ...] = ()) -> CallCredentials:
    return CallCredentials(bearer=bearer, peer_identities=identities, tls=bool(identities))


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
    method = ServiceAccountToken(
        audience="cs", allowed_users=["system:serviceaccount:a:op"], reviewer=reviewer, cache_seconds=60
    )
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
                audience="cs",
                allowed_users=["system:serviceaccount:a:op"],
                reviewer=reviewer,
                cache_seconds=0,
            ),
        ]
    )
    assert (await auth.authenticate(call("static")))[0] is None
    assert (await auth.authenticate(call("sa")))[0] is None
    assert (await auth.authenticate(call("neither")))[0] is grpc.StatusCode.UNAUTHENTICATED
