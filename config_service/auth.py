"""Authentication of RefreshService and ConfigService calls: mutual TLS identities, bearer tokens,
ServiceAccount tokens.

Why an interceptor that wraps the handler: the peer certificate is only visible on the call's context, so
the check runs inside the call, before the servicer; it applies to one service per server (RefreshService
on the refresh port, ConfigService on the config port, each with its own allow-lists) while the health
service on the same port stays open to probes. Each configured method looks at the call and answers
ALLOW, DENY (a valid credential that is not on the allow-list), INVALID (a credential that does not
verify) or ABSENT. Any ALLOW lets the call through; otherwise any DENY is PERMISSION_DENIED and the rest
UNAUTHENTICATED. A TokenReview that cannot be made (or is over its rate limit) is UNAVAILABLE, so the
caller retries.

A bearer token is only accepted when it was protected in transit: the call came over TLS, or from this
host (loopback or Unix socket, e.g. a sidecar). A token sent in clear from elsewhere is refused before any
method sees it, unless the operator of the instance opted out (`insecure_plaintext_tokens`).

With mutual TLS the TLS layer itself requires a client certificate signed by the client CA (gRPC Python
cannot request one optionally): a caller without one fails the handshake and sees UNAVAILABLE. Bearer
tokens are compared with `hmac.compare_digest` against every line of the token file, which is re-read when
its modification time or size changes, so tokens rotate without a restart (keep old and new lines during
a rollout). Token text never reaches a log line or a metric.
"""

from __future__ import annotations

import enum
import hmac
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc

from config_service.loopback import is_loopback_peer
from config_service.metrics import Metrics
from config_service.tokenreview import RateLimited, ReviewFailed, TokenReviewer, TokenReviews

__all__ = ["TokenReviewer", "TokenReviews"]

log = logging.getLogger(__name__)

PROTECTED_SERVICE = "/configrefresh.v1.RefreshService/"
CONFIG_SERVICE_PREFIX = "/configrefresh.v1.ConfigService/"


class Decision(enum.Enum):
    """One method's opinion of a call."""

    ALLOW = "allow"
    DENY = "deny"
    INVALID = "invalid"
    ABSENT = "absent"
    ERROR = "error"


@dataclass(frozen=True)
class Verdict:
    """A decision, who the caller is (if known) and why, for the log and the status message."""

    decision: Decision
    principal: str = ""
    reason: str = ""


@dataclass(frozen=True)
class CallCredentials:
    """What a call carries: its bearer token (if any) and its TLS peer identities (if any)."""

    bearer: str | None
    peer_identities: tuple[str, ...]
    tls: bool
    """The call arrived over TLS (its bearer token, if any, was encrypted in transit)."""
    loopback: bool = False
    """The caller is on this host (127.0.0.0/8, ::1 or a Unix socket): its call never crossed a network.
    Only worked out when it decides something (a bearer token without TLS); otherwise False."""


class Method(Protocol):
    """One way to authenticate a caller."""

    name: str

    async def check(self, credentials: CallCredentials) -> Verdict:
        """Look at the call's credentials."""
        ...


class MutualTls:
    """Allows client certificates whose DNS/URI SAN or CN is on the allow-list."""

    name = "mtls"

    def __init__(self, allowed: Sequence[str]) -> None:
        self._allowed = frozenset(allowed)

    async def check(self, credentials: CallCredentials) -> Verdict:
        if not credentials.peer_identities:
            return Verdict(Decision.ABSENT)
        for identity in credentials.peer_identities:
            if identity in self._allowed:
                return Verdict(Decision.ALLOW, principal=identity)
        return Verdict(
            Decision.DENY,
            principal=credentials.peer_identities[0],
            reason="client certificate identity is not allowed",
        )


class TokenFile:
    """Accepted bearer tokens: the non-empty lines of a file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._tokens: tuple[bytes, ...] = ()
        self.tokens()

    def tokens(self) -> tuple[bytes, ...]:
        """The current tokens; a missing or unreadable file keeps the last good set."""
        try:
            stat = os.stat(self._path)
        except OSError:
            return self._tokens
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._stamp:
            with self._lock:
                try:
                    lines = self._path.read_text().splitlines()
                except OSError:
                    return self._tokens
                self._tokens = tuple(line.strip().encode() for line in lines if line.strip())
                self._stamp = stamp
                log.info("token file loaded", extra={"path": str(self._path), "tokens": len(self._tokens)})
        return self._tokens


class BearerToken:
    """Allows a bearer token equal (in constant time) to one line of the token file."""

    name = "token"

    def __init__(self, token_file: TokenFile) -> None:
        self._file = token_file

    async def check(self, credentials: CallCredentials) -> Verdict:
        if credentials.bearer is None:
            return Verdict(Decision.ABSENT)
        offered = credentials.bearer.encode()
        matched = False
        for token in self._file.tokens():
            matched |= hmac.compare_digest(offered, token)
        if matched:
            return Verdict(Decision.ALLOW, principal="bearer-token")
        return Verdict(Decision.INVALID, reason="bearer token not accepted")


class ServiceAccountToken:
    """Allows Kubernetes ServiceAccount tokens that TokenReview authenticates for the expected audience
    and whose username (or one of whose groups) is on the allow-list. The review itself is bounded by
    `TokenReviews` (single flight, cache, rate limit)."""

    name = "serviceaccount"

    def __init__(
        self,
        *,
        reviews: TokenReviews,
        allowed_users: Sequence[str],
        allowed_groups: Sequence[str] = (),
    ) -> None:
        self._reviews = reviews
        self._audience = reviews.audience
        self._allowed = frozenset(allowed_users)
        self._allowed_groups = frozenset(allowed_groups)

    async def check(self, credentials: CallCredentials) -> Verdict:
        if credentials.bearer is None:
            return Verdict(Decision.ABSENT)
        try:
            status = await self._reviews.review(credentials.bearer)
        except RateLimited:
            return Verdict(Decision.ERROR, reason="too many ServiceAccount token reviews; retry later")
        except ReviewFailed:
            return Verdict(Decision.ERROR, reason="cannot verify the ServiceAccount token now")
        return self._judge(status)

    def _judge(self, status: dict[str, Any]) -> Verdict:
        if not status.get("authenticated"):
            return Verdict(Decision.INVALID, reason="ServiceAccount token not authenticated")
        audiences = status.get("audiences") or []
        if self._audience not in audiences:
            return Verdict(Decision.INVALID, reason="ServiceAccount token is not for this audience")
        user = status.get("user") or {}
        username = str(user.get("username", ""))
        if username in self._allowed:
            return Verdict(Decision.ALLOW, principal=username)
        groups = {str(group) for group in user.get("groups") or ()}
        if groups & self._allowed_groups:
            return Verdict(Decision.ALLOW, principal=username)
        return Verdict(Decision.DENY, principal=username, reason="ServiceAccount is not allowed")


class Authenticator:
    """Combines the configured methods into one verdict per call.

    A bearer token that arrived without TLS from a caller that is not on this host is refused before any
    method sees it (and never sent to TokenReview): it crossed the network in clear, so it may have been
    read on the way. `plaintext_tokens=True` (the `insecure_plaintext_tokens` setting) turns that off.
    """

    def __init__(self, methods: Sequence[Method], *, plaintext_tokens: bool = False) -> None:
        self._methods = tuple(methods)
        self._plaintext_tokens = plaintext_tokens
        self.reads_peer_identities = any(isinstance(method, MutualTls) for method in self._methods)
        """Whether any method looks at the client certificate; without one, a call's TLS identities are
        not decoded (that is most of the check's cost on every Refresh and GetConfig)."""

    async def authenticate(self, credentials: CallCredentials) -> tuple[grpc.StatusCode | None, Verdict]:
        """(None, verdict) to let the call through, else (status code, verdict)."""
        if (
            credentials.bearer is not None
            and not credentials.tls
            and not credentials.loopback
            and not self._plaintext_tokens
        ):
            return grpc.StatusCode.UNAUTHENTICATED, Verdict(
                Decision.INVALID, reason="bearer token sent without TLS is refused"
            )
        verdicts = [await method.check(credentials) for method in self._methods]
        for verdict in verdicts:
            if verdict.decision is Decision.ALLOW:
                return None, verdict
        for decision, code in (
            (Decision.DENY, grpc.StatusCode.PERMISSION_DENIED),
            (Decision.ERROR, grpc.StatusCode.UNAVAILABLE),
            (Decision.INVALID, grpc.StatusCode.UNAUTHENTICATED),
        ):
            for verdict in verdicts:
                if verdict.decision is decision:
                    return code, verdict
        return grpc.StatusCode.UNAUTHENTICATED, Verdict(Decision.ABSENT, reason="no credential")


def credentials_of(
    context: grpc.aio.ServicerContext[Any, Any], *, peer_identities: bool = True
) -> CallCredentials:
    """The bearer token, TLS peer identities (unless `peer_identities` is False), transport security and,
    for a bearer token sent without TLS, the origin of a call."""
    bearer = None
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
    auth_context = context.auth_context() or {}
    identities: list[str] = []
    if peer_identities:
        for key in ("x509_subject_alternative_name", "x509_common_name"):
            for raw in auth_context.get(key, ()):
                text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                if text and text not in identities:
                    identities.append(text)
    security = auth_context.get("transport_security_type", ())
    tls = any(raw in (b"ssl", b"tls", "ssl", "tls") for raw in security)
    # Only a bearer token that came without TLS needs its origin; parsing the peer address on every call
    # was a measurable part of an instance's CPU per Refresh (bench/instance_cost.py).
    loopback = bearer is not None and not tls and is_loopback_peer(context.peer())
    return CallCredentials(bearer=bearer, peer_identities=tuple(identities), tls=tls, loopback=loopback)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Guards the unary methods of one gRPC service (by full-name prefix) with an Authenticator; other
    services on the same server (grpc.health.v1) pass through, so probes need no credential."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        service_prefix: str = PROTECTED_SERVICE,
        metrics: Metrics | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._prefix = service_prefix
        self._service = service_prefix.strip("/").rsplit(".", 1)[-1]
        self._metrics = metrics
        # grpc.aio asks the interceptor once per call: the guarded handler is built once per method
        # (and per handler object, should the server's handlers change) instead of on every call.
        self._guarded: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler
        cached = self._guarded.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = self._guard(method, handler)
        self._guarded[method] = (handler, guarded)
        return guarded

    def _guard(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None:  # pragma: no cover - both protected services are unary only
            raise RuntimeError(f"{method}: only unary methods can be guarded")
        inner = handler.unary_unary
        authenticator = self._authenticator
        metrics = self._metrics
        service = self._service
        peer_identities = authenticator.reads_peer_identities

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            credentials = credentials_of(context, peer_identities=peer_identities)
            code, verdict = await authenticator.authenticate(credentials)
            if code is not None:
                log.warning(
                    "refresh call refused" if service == "RefreshService" else "config call refused",
                    extra={
                        "method": method,
                        "code": code.name,
                        "principal": verdict.principal,
                        "reason": verdict.reason,
                        "peer": context.peer(),
                    },
                )
                if metrics is not None:
                    metrics.auth_refusals.labels(code=code.name, service=service).inc()
                await context.abort(code, verdict.reason or "no credential")
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


RefreshAuthInterceptor = AuthInterceptor
"""The name this class had when it guarded RefreshService only."""


def build_authenticator(
    *,
    allowed_identities: Sequence[str],
    mtls: bool,
    token_file: Path | None,
    reviews: TokenReviews | None,
    tokenreview_allowed_users: Sequence[str],
    tokenreview_allowed_groups: Sequence[str] = (),
    plaintext_tokens: bool = False,
) -> Authenticator | None:
    """The methods the settings ask for; None when none is configured (unauthenticated)."""
    methods: list[Method] = []
    if mtls:
        methods.append(MutualTls(allowed_identities))
    if token_file is not None:
        methods.append(BearerToken(TokenFile(token_file)))
    if reviews is not None and (tokenreview_allowed_users or tokenreview_allowed_groups):
        methods.append(
            ServiceAccountToken(
                reviews=reviews,
                allowed_users=tokenreview_allowed_users,
                allowed_groups=tokenreview_allowed_groups,
            )
        )
    return Authenticator(methods, plaintext_tokens=plaintext_tokens) if methods else None
