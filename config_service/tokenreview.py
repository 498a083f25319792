"""Kubernetes TokenReview, bounded: one call in flight per token, a rate limit, and a small result cache.

Why bounded: every bearer token a caller sends would otherwise become one TokenReview call to the API
server, so a flood of made-up tokens turns into API-server load. Three limits stop that:

- single flight: concurrent calls carrying the same token share one TokenReview;
- a result cache (least recently used, at most `cache_size` entries, each kept `cache_seconds`) keyed by
  the SHA-256 of the token, negative answers included, so a repeated bogus token costs nothing;
- a token bucket (`rate_per_second`, `burst`) over the calls actually made: beyond it a review is not made
  and the call is answered UNAVAILABLE (the caller retries; a token already cached is unaffected).

So N distinct bogus tokens cost at most `burst + rate_per_second * seconds` TokenReview calls, whatever N
is. API errors are not cached. Token text never reaches a log line, a metric label or the cache key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from config_service.metrics import Metrics
from config_service.single_flight import SingleFlight

log = logging.getLogger(__name__)

TokenReviewer = Callable[[str, str], Awaitable[dict[str, Any]]]
"""(token, audience) -> TokenReview status as a dict: authenticated, audiences, user.username, user.groups."""


class RateLimited(Exception):
    """The TokenReview rate limit is spent; the call should be retried later."""


class ReviewFailed(Exception):
    """The TokenReview call itself failed (API server unreachable, RBAC, timeout)."""


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `take()` says whether one was available."""

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._level = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        """Take one token if there is one."""
        now = self._clock()
        self._level = min(self._burst, self._level + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._level >= 1.0:
            self._level -= 1.0
            return True
        return False


class TokenReviews:
    """TokenReview answers for one audience, with single flight, a bounded cache and a rate limit."""

    def __init__(
        self,
        *,
        reviewer: TokenReviewer,
        audience: str,
        cache_seconds: float,
        cache_size: int,
        rate_per_second: float,
        burst: int,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audience = audience
        self._review = reviewer
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._flights: SingleFlight[dict[str, Any]] = SingleFlight()
        self._bucket = TokenBucket(rate=rate_per_second, burst=burst, clock=clock)
        self._metrics = metrics
        self._clock = clock

    async def review(self, token: str) -> dict[str, Any]:
        """The TokenReview status of `token` for this audience; RateLimited or ReviewFailed otherwise."""
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > self._clock():
                self._cache.move_to_end(key)
                self._count("cached")
                return cached[1]
            del self._cache[key]
        if self._flights.in_flight(key):
            self._count("joined")
        return await self._flights.do(key, lambda: self._call(key, token))

    async def _call(self, key: str, token: str) -> dict[str, Any]:
        if not self._bucket.take():
            self._count("rate_limited")
            raise RateLimited("TokenReview rate limit reached")
        self._count("called")
        try:
            status = await self._review(token, self.audience)
        except Exception as error:
            self._count("error")
            log.warning("TokenReview failed", extra={"error": type(error).__name__})
            raise ReviewFailed(type(error).__name__) from error
        if self._cache_seconds > 0 and self._cache_size > 0:
            self._cache[key] = (self._clock() + self._cache_seconds, status)
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return status

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.tokenreviews.labels(outcome=outcome).inc()


def kubernetes_token_reviewer(kubeconfig: Path | None) -> TokenReviewer:
    """A TokenReview call through the official kubernetes client, run in a thread."""
    from kubernetes import client, config  # imported here: only instances using TokenReview pay for it

    if kubeconfig is not None:
        api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    else:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        api_client = client.ApiClient(configuration)
    api = client.AuthenticationV1Api(api_client)

    def review(token: str, audience: str) -> dict[str, Any]:
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=[audience]))
        answer = api.create_token_review(body, _request_timeout=5)
        status = answer.status
        if status is None:
            return {"authenticated": False}
        user = status.user
        return {
            "authenticated": bool(status.authenticated),
            "audiences": list(status.audiences or []),
            "user": {
                "username": user.username if user else "",
                "groups": list(user.groups or []) if user else [],
            },
        }

    async def reviewer(token: str, audience: str) -> dict[str, Any]:
        return await asyncio.to_thread(review, token, audience)

    return reviewer
