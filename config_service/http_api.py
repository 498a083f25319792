"""The local HTTP read API: config for apps in any language, over loopback only, with a long poll.

    GET /v1/config/{name}        one parameter; {name} is the parameter path without its leading slash
                                 (/v1/config/config-service/acme/orders/db_url); %2F-encoded slashes work too
    GET /v1/config?prefix=P      every live parameter under P (default: every prefix this instance loads)
    GET /v1/health               200 once the bootstrap loaded every prefix, 503 before and while stopping

Answers are JSON (`{"name", "value", "version", "type", "lastModified"}`; a listing is
`{"prefix", "parameters": [...], "withheld": [names]}`) with an `ETag`. For one parameter the ETag is its
version (`"7"`); for a listing it is an opaque digest of the names and versions it holds. Long poll:
`?wait=30s` (also `500ms`, `2m`, or plain seconds) or an `If-None-Match` header holds the request until the
ETag differs from the caller's (the one in If-None-Match, else the one current when the request arrived),
then answers 200 at once. On timeout it answers 304 when the caller sent If-None-Match, 200 otherwise.
`If-None-Match` without `?wait=` waits `local_http_default_wait_seconds`; `?wait=0` makes it a plain
conditional GET. A parameter that does not exist (or was deleted) is 404, and a long poll on it answers as
soon as it appears, or at once when the caller's ETag is for a version that was since deleted.

SecureStrings are withheld (403 for one, listed under `withheld` in a listing) unless
`--local-http-secure-strings`: any process in the pod's network namespace can call a loopback port, which is
the same trust as the gRPC ConfigService in loopback mode, but the HTTP API is also what curl-in-a-debug-
container reaches first, so a secret on it is an explicit choice.

Why aiohttp: the long poll holds hundreds of idle requests on one event loop with a real HTTP/1.1 parser
(keep-alive, chunking, malformed-request handling) that a hand-written asyncio server would have to
re-implement; aiohttp is a well-kept library already pinned by this project (constraints.txt) for the
operator, now also in the `service` extra. Binding is to a loopback address only (the settings refuse any
other), so the API never leaves the pod.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from config_service.cache import ConfigCache, Entry, Snapshot, ValueType
from config_service.changes import ChangeFeed
from config_service.lifecycle import Lifecycle
from config_service.metrics import Metrics

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


Rendered = tuple[str | None, int, dict[str, Any]]


def parse_wait(text: str) -> float:
    """Seconds from `30s`, `500ms`, `2m` or `30`; ValueError for anything else."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration like 30s, 500ms or 2m, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def etag_values(header: str) -> set[str]:
    """The entity tags of an If-None-Match header, unquoted (weak tags compare as strong: a version is
    a version); `*` stays `*`."""
    tags = set()
    for part in header.split(","):
        tag = part.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        tags.add(tag.strip('"'))
    return tags - {""}


def entry_json(entry: Entry) -> dict[str, Any]:
    """The JSON view of a live entry."""
    return {
        "name": entry.name,
        "value": entry.value,
        "version": entry.version,
        "type": entry.value_type.value,
        "lastModified": entry.last_modified.isoformat() if entry.last_modified else None,
    }


def listing_tag(entries: list[Entry]) -> str:
    """The ETag of a listing: a digest of its (name, version) pairs, sorted by name."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(f"{entry.name}\0{entry.version}\n".encode())
    return digest.hexdigest()[:32]


def under_prefix(snapshot: Snapshot, prefix: str) -> list[Entry]:
    """Live entries whose names start with `prefix`, sorted by name."""
    names = snapshot.sorted_names()
    found = []
    for index in range(bisect.bisect_left(names, prefix), len(names)):
        if not names[index].startswith(prefix):
            break
        entry = snapshot.get(names[index])
        if entry is not None:
            found.append(entry)
    return found


class HttpApi:
    """The aiohttp application and its runner; `start` binds, `stop` ends every long poll and closes."""

    def __init__(
        self,
        *,
        cache: ConfigCache,
        feed: ChangeFeed,
        lifecycle: Lifecycle,
        metrics: Metrics,
        prefixes: tuple[str, ...],
        secure_strings: bool,
        default_wait_seconds: float,
        max_wait_seconds: float,
    ) -> None:
        self._cache = cache
        self._feed = feed
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._prefixes = prefixes
        self._secure_strings = secure_strings
        self._default_wait = default_wait_seconds
        self._max_wait = max_wait_seconds
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def application(self) -> web.Application:
        """The routes (also used directly by tests)."""
        app = web.Application()
        app.router.add_get("/v1/health", self._health)
        app.router.add_get("/v1/config", self._list)
        app.router.add_get("/v1/config/{name:.+}", self._get)
        return app

    async def start(self, host: str, port: int) -> int:
        """Bind `host:port` (0 picks one) and serve; returns the bound port."""
        self._runner = web.AppRunner(self.application(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_port=False)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Answer every waiting long poll now (with the current state), then close the listener."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ----- handlers ---------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        serving = self._lifecycle.is_serving
        return web.json_response(
            {"status": "SERVING" if serving else self._lifecycle.phase.value.upper()},
            status=200 if serving else 503,
        )

    async def _get(self, request: web.Request) -> web.StreamResponse:
        name = "/" + request.match_info["name"].lstrip("/")
        return await self._answer(request, lambda snapshot: self._one(snapshot, name))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        prefix = request.query.get("prefix")
        if prefix is not None and not prefix.startswith("/"):
            prefix = "/" + prefix
        return await self._answer(request, lambda snapshot: self._many(snapshot, prefix))

    # ----- one answer, possibly after a wait --------------------------------------------------------

    def _one(self, snapshot: Snapshot, name: str) -> Rendered:
        entry = snapshot.get(name)
        if entry is None:
            return None, 404, {"error": "not found", "name": name}
        if entry.value_type is ValueType.SECURE_STRING and not self._secure_strings:
            return (
                str(entry.version),
                403,
                {
                    "error": "SecureString values are withheld on the local HTTP API "
                    "(config-service --local-http-secure-strings serves them)",
                    "name": name,
                    "version": entry.version,
                },
            )
        return str(entry.version), 200, entry_json(entry)

    def _many(self, snapshot: Snapshot, prefix: str | None) -> Rendered:
        found: dict[str, Entry] = {}  # prefixes may overlap: each name once
        for root in (prefix,) if prefix is not None else self._prefixes:
            found.update((entry.name, entry) for entry in under_prefix(snapshot, root))
        entries = [found[name] for name in sorted(found)]
        shown: list[Entry] = []
        withheld: list[str] = []
        for entry in entries:
            if entry.value_type is ValueType.SECURE_STRING and not self._secure_strings:
                withheld.append(entry.name)
            else:
                shown.append(entry)
        body = {
            "prefix": prefix,
            "parameters": [entry_json(entry) for entry in shown],
            "withheld": withheld,
        }
        return listing_tag(entries), 200, body

    async def _answer(
        self, request: web.Request, render: Callable[[Snapshot], Rendered]
    ) -> web.StreamResponse:
        if not self._lifecycle.is_serving:
            return web.json_response(
                {"error": f"not serving ({self._lifecycle.phase.value})"},
                status=503,
                headers={"Retry-After": "1"},
            )
        header = request.headers.get("If-None-Match")
        known = etag_values(header) if header is not None else None
        try:
            wait = (
                min(parse_wait(request.query["wait"]), self._max_wait)
                if "wait" in request.query
                else (self._default_wait if known is not None else 0.0)
            )
        except ValueError as error:
            return web.json_response({"error": f"wait: {error}"}, status=400)
        started = time.monotonic()
        changed = self._feed.next_change()
        tag, status, body = render(self._cache.snapshot)
        baseline = known if known is not None else {tag or ""}
        parked = wait > 0 and _unchanged(tag, baseline)
        if parked:
            self._metrics.local_long_polls.inc()
            try:
                while _unchanged(tag, baseline) and not self._closing.is_set():
                    remaining = wait - (time.monotonic() - started)
                    if remaining <= 0:
                        break
                    closing = asyncio.ensure_future(self._closing.wait())
                    woken = asyncio.ensure_future(changed.wait())
                    try:
                        await asyncio.wait({closing, woken}, timeout=remaining, return_when="FIRST_COMPLETED")
                    finally:
                        closing.cancel()
                        woken.cancel()
                    changed = self._feed.next_change()
                    tag, status, body = render(self._cache.snapshot)
            finally:
                self._metrics.local_long_polls.dec()
        if parked and not _unchanged(tag, baseline):
            elapsed = time.monotonic() - self._feed.applied_at
            self._metrics.local_delivery_latency.labels(path="long_poll").observe(elapsed)
        headers = {"Cache-Control": "no-store"}
        if tag is not None:
            headers["ETag"] = f'"{tag}"'
        if known is not None and tag is not None and _unchanged(tag, known):
            return web.Response(status=304, headers=headers)
        return web.Response(
            status=status,
            headers=headers,
            content_type="application/json",
            text=json.dumps(body, separators=(",", ":")),
        )


def _unchanged(tag: str | None, baseline: set[str]) -> bool:
    """Whether the current ETag is one the caller already holds ("*" holds anything that exists)."""
    if tag is None:
        return "" in baseline
    return tag in baseline or "*" in baseline
