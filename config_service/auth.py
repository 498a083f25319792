"""Authentication of RefreshService calls: mutual TLS identities, bearer tokens, ServiceAccount tokens.

Why an interceptor that wraps the handler: the peer certificate is only visible on the call's context, so
the check runs inside the call, before the servicer; it applies to RefreshService only (the health
service on the same port stays open to probes). Each configured method looks at the call and answers
ALLOW, DENY (a valid credential that is not on the allow-list), INVALID (a credential that does not
verify) or ABSENT. Any ALLOW lets the call through; otherwise any DENY is PERMISSION_DENIED and the rest
UNAUTHENTICATED. A TokenReview that cannot be made is UNAVAILABLE, so the operator retries.

With mutual TLS the TLS layer itself requires a client certificate signed by the client CA (gRPC Python
cannot request one optionally): a caller without one fails the handshake and sees UNAVAILABLE. Bearer
tokens are compared with `hmac.compare_digest` against every line of the token file, which is re-read when
its modification time or size changes, so tokens rotate without a restart (keep old and new lines during
a rollout). Token text never reaches a log line or a metric.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc

from config_service.metrics import Metrics

log = logging.getLogger(__name__)

PROTECTED_SERVICE = "/configrefresh.v1.RefreshService/"


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


TokenReviewer = Callable[[str, str], Awaitable[dict[str, Any]]]


class ServiceAccountToken:
    """Allows Kubernetes ServiceAccount tokens that TokenReview authenticates for the expected audience
    and whose username is on the allow-list; answers are cached for a while, keyed by a token hash."""

    name = "serviceaccount"

    def __init__(
        self,
        *,
        audience: str,
        allowed_users: Sequence[str],
        reviewer: TokenReviewer,
        cache_seconds: float,
    ) -> None:
        self._audience = audience
        self._allowed = frozenset(allowed_users)
        self._review = reviewer
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[float, Verdict]] = {}

    async def check(self, credentials: CallCredentials) -> Verdict:
        if credentials.bearer is None:
            return Verdict(Decision.ABSENT)
        key = hashlib.sha256(credentials.bearer.encode()).digest()
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            status = await self._review(credentials.bearer, self._audience)
        except Exception as error:
            log.warning("TokenReview failed", extra={"error": type(error).__name__})
            return Verdict(Decision.ERROR, reason="cannot verify the ServiceAccount token now")
        verdict = self._judge(status)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self._cache_seconds, verdict)
        return verdict

    def _judge(self, status: dict[str, Any]) -> Verdict:
        if not status.get("authenticated"):
            return Verdict(Decision.INVALID, reason="ServiceAccount token not authenticated")
        audiences = status.get("audiences") or []
        if self._audience not in audiences:
            return Verdict(Decision.INVALID, reason="ServiceAccount token is not for this audience")
        username = str((status.get("user") or {}).get("username", ""))
        if username in self._allowed:
            return Verdict(Decision.ALLOW, principal=username)
        return Verdict(Decision.DENY, principal=username, reason="ServiceAccount is not allowed")


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
        return {
            "authenticated": bool(status.authenticated),
            "audiences": list(status.audiences or []),
            "user": {"username": status.user.username if status.user else ""},
        }

    async def reviewer(token: str, audience: str) -> dict[str, Any]:
        return await asyncio.to_thread(review, token, audience)

    return reviewer


class Authenticator:
    """Combines the configured methods into one verdict per call."""

    def __init__(self, methods: Sequence[Method]) -> None:
        self._methods = tuple(methods)

    async def authenticate(self, credentials: CallCredentials) -> tuple[grpc.StatusCode | None, Verdict]:
        """(None, verdict) to let the call through, else (status code, verdict)."""
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


def credentials_of(context: grpc.aio.ServicerContext[Any, Any]) -> CallCredentials:
    """The bearer token and TLS peer identities of a call."""
    bearer = None
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
    auth_context = context.auth_context() or {}
    identities: list[str] = []
    for key in ("x509_subject_alternative_name", "x509_common_name"):
        for raw in auth_context.get(key, ()):
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            if text and text not in identities:
                identities.append(text)
    tls = bool(auth_context.get("transport_security_type"))
    return CallCredentials(bearer=bearer, peer_identities=tuple(identities), tls=tls)


class RefreshAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Guards RefreshService methods with an Authenticator; other services pass through."""

    def __init__(self, authenticator: Authenticator, *, metrics: Metrics | None = None) -> None:
        self._authenticator = authenticator
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(PROTECTED_SERVICE) or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        authenticator = self._authenticator
        metrics = self._metrics

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            code, verdict = await authenticator.authenticate(credentials_of(context))
            if code is not None:
                log.warning(
                    "refresh call refused",
                    extra={
                        "method": method,
                        "code": code.name,
                        "principal": verdict.principal,
                        "reason": verdict.reason,
                        "peer": context.peer(),
                    },
                )
                if metrics is not None:
                    metrics.auth_refusals.labels(code=code.name).inc()
                await context.abort(code, verdict.reason or "no credential")
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def build_authenticator(
    *,
    allowed_identities: Sequence[str],
    mtls: bool,
    token_file: Path | None,
    tokenreview_audience: str | None,
    tokenreview_allowed_users: Sequence[str],
    tokenreview_cache_seconds: float,
    kubeconfig: Path | None,
    reviewer: TokenReviewer | None = None,
) -> Authenticator | None:
    """The methods the settings ask for; None when none is configured (insecure refresh)."""
    methods: list[Method] = []
    if mtls:
        methods.append(MutualTls(allowed_identities))
    if token_file is not None:
        methods.append(BearerToken(TokenFile(token_file)))
    if tokenreview_audience is not None:
        methods.append(
            ServiceAccountToken(
                audience=tokenreview_audience,
                allowed_users=tokenreview_allowed_users,
                reviewer=reviewer or kubernetes_token_reviewer(kubeconfig),
                cache_seconds=tokenreview_cache_seconds,
            )
        )
    return Authenticator(methods) if methods else None
