"""Bearer tokens for Refresh calls: one ServiceAccount token per audience, minted with TokenRequest.

Each config-service accepts only tokens issued for its own audience (by default
``configrefresh.io/<cloud map namespace>/<service>``), so a token captured at one service is useless at
every other. The operator asks the API server for a token of its own ServiceAccount with exactly the
route's audience (``create`` on ``serviceaccounts/token``, which the chart grants for that one name), keeps
it per audience, and asks for a new one once half its lifetime has passed, well before it expires. Callers
of the same audience share one request in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

TokenRequester = Callable[[str, int], Awaitable[tuple[str, float]]]
"""(audience, expiration seconds) → (token, expiry as epoch seconds)."""


class TokenError(Exception):
    """No token could be had for an audience; the message says why (never the token)."""


@dataclasses.dataclass(frozen=True)
class _Held:
    token: str
    renew_at: float
    expires_at: float


class TokenCache:
    """Tokens by audience, renewed after half their lifetime (or 5 minutes before expiry, if sooner)."""

    def __init__(
        self,
        request: TokenRequester,
        *,
        expiration_seconds: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._request = request
        self._expiration = expiration_seconds
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.requests = 0
        """TokenRequest calls made so far (for tests and metrics)."""

    async def token(self, audience: str) -> str:
        held = self._held.get(audience)
        if held is not None and self._clock() < held.renew_at:
            return held.token
        lock = self._locks.setdefault(audience, asyncio.Lock())
        async with lock:
            held = self._held.get(audience)
            now = self._clock()
            if held is not None and now < held.renew_at:
                return held.token
            try:
                self.requests += 1
                token, expires_at = await self._request(audience, self._expiration)
            except Exception as error:
                if held is not None and now < held.expires_at - 30:
                    return held.token  # renewal failed: the old token is still good for a while
                raise TokenError(f"TokenRequest for audience {audience} failed: {error}") from None
            lifetime = max(0.0, expires_at - now)
            renew_at = now + min(lifetime / 2, max(0.0, lifetime - 300))
            self._held[audience] = _Held(token=token, renew_at=renew_at, expires_at=expires_at)
            return token
