"""ConfigService over gRPC: the read API applications call, served from the current snapshot.

Why it is this small: a read takes the snapshot reference once and answers from it, so it never waits on
a refresh and never sees half of one. ListConfig pages through the snapshot's sorted names; a page token
is the last name returned, signed with a key private to this process, so a token this instance did not
issue (or one issued for another prefix) is INVALID_ARGUMENT rather than a silent wrong page.

Who may read: the server's interceptor authenticates every ConfigService call, unless the port is bound
to a loopback address (sidecar mode). The one remaining case, an explicit `--insecure-config-api`, builds
this servicer with `withhold_secrets=True`: SecureString values then never leave it (GetConfig answers
PERMISSION_DENIED, ListConfig leaves them out), because a secret goes only to an authenticated caller or
to a caller on the same host.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

import grpc

from config_service.cache import ConfigCache, Entry, Snapshot, ValueType
from config_service.convert import entry_to_proto
from config_service.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
    grpc_status,
)
from config_service.lifecycle import Lifecycle, Phase
from config_service.metrics import Metrics
from configrefresh.v1 import config_service_pb2 as pb
from configrefresh.v1 import config_service_pb2_grpc as pb_grpc

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class PageTokens:
    """Issues and checks page tokens: base64(last name) + "." + HMAC over (prefix, last name)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def issue(self, prefix: str, last_name: str) -> str:
        """A token that resumes after `last_name` for `prefix`."""
        body = base64.urlsafe_b64encode(last_name.encode()).decode().rstrip("=")
        return f"{body}.{self._sign(prefix, last_name)}"

    def resume_after(self, prefix: str, token: str) -> str:
        """The last name of the previous page; InvalidArgument for a token not issued here for `prefix`."""
        body, sep, signature = token.partition(".")
        try:
            last_name = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument("page_token", "was not issued by this instance") from None
        if not sep or not hmac.compare_digest(signature, self._sign(prefix, last_name)):
            raise InvalidArgument("page_token", "was not issued by this instance for this prefix")
        return last_name

    def _sign(self, prefix: str, last_name: str) -> str:
        digest = hmac.new(self._key, f"{prefix}\0{last_name}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()


def list_page(
    snapshot: Snapshot, *, prefix: str, page_size: int, after: str | None
) -> tuple[list[str], bool]:
    """Names of live entries under `prefix` after `after`, at most `page_size`; and whether more follow."""
    names = snapshot.sorted_names()
    start = bisect.bisect_right(names, after) if after is not None else bisect.bisect_left(names, prefix)
    page: list[str] = []
    for index in range(start, len(names)):
        name = names[index]
        if not name.startswith(prefix):
            break  # names under a prefix are contiguous in sorted order
        if snapshot.get(name) is None:
            continue  # a tombstone is not listed
        if len(page) == page_size:
            return page, True
        page.append(name)
    return page, False


class ConfigServicer(pb_grpc.ConfigServiceServicer):
    """GetConfig and ListConfig over one cache."""

    def __init__(
        self,
        *,
        cache: ConfigCache,
        lifecycle: Lifecycle | None = None,
        metrics: Metrics | None = None,
        page_tokens: PageTokens | None = None,
        withhold_secrets: bool = False,
    ) -> None:
        self._cache = cache
        self._withhold_secrets = withhold_secrets
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._tokens = page_tokens or PageTokens()
        # The answer to GetConfig for each name, built on its first read and reused until the entry
        # changes: a read then costs a dict lookup and an identity check, not a protobuf build. A swap
        # drops the changed names (so a superseded value does not linger here; a read racing a swap can
        # leave one until that name's next read), and a read checks the entry's identity, so a stale
        # answer is never served.
        self._answers: dict[str, tuple[Entry, pb.GetConfigResponse]] = {}
        cache.add_listener(self._forget)

    async def GetConfig(
        self,
        request: pb.GetConfigRequest,
        context: grpc.aio.ServicerContext[pb.GetConfigRequest, pb.GetConfigResponse],
    ) -> pb.GetConfigResponse:
        started = time.perf_counter()
        try:
            self._check_ready()
            if not request.name:
                raise InvalidArgument("name", "must not be empty")
            entry = self._cache.snapshot.get(request.name)
            if entry is None:
                raise NotFound(f"no parameter {request.name!r} on this instance")
            if self._withhold_secrets and entry.value_type is ValueType.SECURE_STRING:
                raise PermissionDenied(
                    "SecureString values go only to authenticated callers; this instance serves "
                    "ConfigService without authentication (--insecure-config-api)"
                )
            answer = self._answers.get(entry.name)
            if answer is not None and answer[0] is entry:
                response = answer[1]
            else:
                response = pb.GetConfigResponse(entry=entry_to_proto(entry))
                self._answers[entry.name] = (entry, response)
        except ServiceError as error:
            await context.abort(grpc_status(error), str(error))
            raise
        if self._metrics is not None:
            self._metrics.getconfig_latency.observe(time.perf_counter() - started)
        return response

    async def ListConfig(
        self,
        request: pb.ListConfigRequest,
        context: grpc.aio.ServicerContext[pb.ListConfigRequest, pb.ListConfigResponse],
    ) -> pb.ListConfigResponse:
        try:
            self._check_ready()
            if request.page_size < 0:
                raise InvalidArgument("page_size", "must not be negative")
            page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            after = (
                self._tokens.resume_after(request.prefix, request.page_token) if request.page_token else None
            )
            snapshot = self._cache.snapshot
            names, more = list_page(snapshot, prefix=request.prefix, page_size=page_size, after=after)
        except ServiceError as error:
            await context.abort(grpc_status(error), str(error))
            raise
        entries = []
        for name in names:
            entry = snapshot.get(name)
            if entry is None:
                continue
            if self._withhold_secrets and entry.value_type is ValueType.SECURE_STRING:
                continue
            entries.append(entry_to_proto(entry))
        token = self._tokens.issue(request.prefix, names[-1]) if more and names else ""
        return pb.ListConfigResponse(entries=entries, next_page_token=token)

    def _forget(self, applied: Sequence[Entry]) -> None:
        for entry in applied:
            self._answers.pop(entry.name, None)

    def _check_ready(self) -> None:
        if self._lifecycle is not None and self._lifecycle.phase is Phase.BOOTSTRAPPING:
            raise Unavailable("instance is still bootstrapping")
