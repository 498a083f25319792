"""One grpc.aio channel per endpoint, reused across rollouts and closed when the endpoint disappears.

A channel owns a TCP (and TLS) connection and HTTP/2 state; opening one per call would add a handshake to
every refresh and defeat the sub-second target. Channels are created lazily, inside the running event
loop that uses them (grpc.aio objects belong to the loop that created them); a channel found to belong to
another loop (a test's loop that ended, an operator restarted in-process) is replaced, not reused.

Reconnect backoff is kept short (100 ms growing to 1 s, instead of gRPC's 1 s growing to 120 s) so an
instance that restarts is reachable again within a retry or two. ``grpc.min_reconnect_backoff_ms`` is left
alone on purpose: gRPC core uses it as the minimum *connect timeout* (20 s), and lowering it makes slow TLS
handshakes fail; each call's own deadline already bounds how long a caller waits. gRPC's own retries are
off: the fan-out retries with its own deadline and breaker.

With ``max_channels`` set, the pool keeps at most that many: opening one more first closes the least
recently used. Each warm channel holds about 40 KiB (gRPC core's channel, subchannel and HTTP/2
transport; bench/channel_memory.py), so a fleet larger than the bound trades a reconnect on its next
refresh for memory. An evicted channel is closed with a grace of ``EVICTION_GRACE_SECONDS`` (the longest
call timeout a route can set), so a call still running on it finishes first. Its address is remembered
until it too has gone unused for ``idle_seconds``, so that ``sweep_idle`` reports it like an idle one and
the fan-out drops its breaker: in a fleet larger than the bound whose pods come and go, the breakers of
long-gone addresses would otherwise pile up.

TLS credentials are read from the mounted files when a channel is created, and re-read when a file's
modification time changes (certificates rotated by cert-manager); channels built on older credentials are
replaced at their next use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from configrefresh.v1 import refresh_service_pb2_grpc
from refresh_operator.fanout.policy import TlsSettings

log = logging.getLogger(__name__)

MAX_RECONNECT_BACKOFF_SECONDS = 1.0
"""The longest a channel waits between reconnection attempts (gRPC adds up to 20 % jitter)."""

EVICTION_GRACE_SECONDS = 60.0
"""How long a channel closed to make room waits for its running calls (spec.refresh.timeoutSeconds ≤ 60)."""

_CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", int(MAX_RECONNECT_BACKOFF_SECONDS * 1000)),
)


class CredentialFileError(Exception):
    """A TLS or token file named in the operator's settings is missing, unreadable or empty."""


@dataclass(frozen=True)
class _Credentials:
    fingerprint: tuple[tuple[str, int, int], ...]
    credentials: Any


@dataclass
class _Entry:
    channel: Any
    stub: Any
    loop: asyncio.AbstractEventLoop
    fingerprint: tuple[tuple[str, int, int], ...]
    last_used: float


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise CredentialFileError(f"cannot read TLS file {path}: {exc.strerror or exc}") from exc


def _fingerprint(tls: TlsSettings) -> tuple[tuple[str, int, int], ...]:
    marks: list[tuple[str, int, int]] = []
    for path in (tls.ca_file, tls.cert_file, tls.key_file):
        if path is None:
            continue
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise CredentialFileError(f"cannot read TLS file {path}: {exc.strerror or exc}") from exc
        marks.append((path, stat.st_mtime_ns, stat.st_size))
    return tuple(marks)


class ChannelPool:
    """Channels keyed by ``(address, tls)``; ``None`` TLS means plaintext.

    Endpoints disappear as instances are replaced. A caller that knows every live address (across all
    routes) can call ``close_missing``; otherwise ``sweep_idle`` (called by the fan-out at the start of
    each rollout) closes channels unused for ``idle_seconds`` (10 minutes if unset), far longer than any
    call's deadline, so a channel is never closed under a call. ``max_channels`` (0: no bound) caps the
    channels kept: the least recently used is closed, after its running calls, to make room for a new one.
    """

    def __init__(
        self,
        *,
        options: Iterable[tuple[str, int | str]] = (),
        idle_seconds: float = 600.0,
        max_channels: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._options = (*_CHANNEL_OPTIONS, *options)
        self._idle_seconds = idle_seconds
        self._max_channels = max_channels
        self.evicted = 0
        """Channels closed to stay within ``max_channels`` so far."""
        self._monotonic = monotonic
        self._entries: dict[tuple[str, TlsSettings | None], _Entry] = {}  # least recently used first
        self._credentials: dict[TlsSettings, _Credentials] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._evicted_last_used: dict[str, float] = {}  # address → when its evicted channel was last used

    def __len__(self) -> int:
        return len(self._entries)

    def addresses(self) -> set[str]:
        """Endpoints that currently have a channel."""
        return {address for address, _ in self._entries}

    def prepare(self, tls: TlsSettings | None) -> None:
        """Load (or reload, if the files changed) the credentials of ``tls``; raise
        ``CredentialFileError`` when a file is missing or unreadable. Called once per rollout, so a bad
        mount fails the rollout with one clear reason."""
        if tls is None:
            return
        fingerprint = _fingerprint(tls)
        cached = self._credentials.get(tls)
        if cached is not None and cached.fingerprint == fingerprint:
            return
        if (tls.cert_file is None) != (tls.key_file is None):
            raise CredentialFileError("mutual TLS needs both a certificate file and a key file")
        roots = _read(tls.ca_file)
        if tls.ca_bundle is not None:
            roots = (roots.rstrip(b"\n") + b"\n" if roots else b"") + tls.ca_bundle
        credentials = grpc.ssl_channel_credentials(
            root_certificates=roots,
            private_key=_read(tls.key_file),
            certificate_chain=_read(tls.cert_file),
        )
        self._credentials[tls] = _Credentials(fingerprint=fingerprint, credentials=credentials)

    def stub(self, address: str, tls: TlsSettings | None) -> Any:
        """A RefreshService stub over the pooled channel to ``address`` (created on first use)."""
        loop = asyncio.get_running_loop()
        key = (address, tls)
        fingerprint: tuple[tuple[str, int, int], ...] = ()
        if tls is not None:
            if tls not in self._credentials:
                self.prepare(tls)
            fingerprint = self._credentials[tls].fingerprint
        now = self._monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry.loop is loop and entry.fingerprint == fingerprint:
            entry.last_used = now
            self._entries[key] = self._entries.pop(key)  # most recently used last
            return entry.stub
        if entry is not None:
            self._retire(self._entries.pop(key))
        self._evicted_last_used.pop(address, None)
        self._make_room()
        channel = self._open(address, tls)
        entry = _Entry(
            channel=channel,
            stub=refresh_service_pb2_grpc.RefreshServiceStub(channel),
            loop=loop,
            fingerprint=fingerprint,
            last_used=now,
        )
        self._entries[key] = entry
        return entry.stub

    def _make_room(self) -> None:
        """Close least recently used channels until one more fits within ``max_channels``."""
        if self._max_channels <= 0:
            return
        while len(self._entries) >= self._max_channels:
            key = next(iter(self._entries))
            entry = self._entries.pop(key)
            self._retire(entry, grace=EVICTION_GRACE_SECONDS)
            address = key[0]
            self._evicted_last_used[address] = max(entry.last_used, self._evicted_last_used.get(address, 0.0))
            self.evicted += 1

    def close_missing(self, live_addresses: Iterable[str]) -> int:
        """Close the channels of endpoints not in ``live_addresses``; returns how many were closed.
        Closing happens in the background (a grace of 0: nothing should still be using them)."""
        live = set(live_addresses)
        gone = [key for key in self._entries if key[0] not in live]
        for key in gone:
            self._retire(self._entries.pop(key))
        return len(gone)

    def sweep_idle(self) -> set[str]:
        """Close channels unused for ``idle_seconds``; returns the addresses left without any channel,
        those of channels evicted earlier (``max_channels``) and unused since for as long included."""
        cutoff = self._monotonic() - self._idle_seconds
        idle = [key for key, entry in self._entries.items() if entry.last_used < cutoff]
        for key in idle:
            self._retire(self._entries.pop(key))
        evicted = [address for address, last_used in self._evicted_last_used.items() if last_used < cutoff]
        for address in evicted:
            del self._evicted_last_used[address]
        return ({address for address, _ in idle} | set(evicted)) - self.addresses()

    async def aclose(self) -> None:
        """Close every channel (those of the running loop; others are dropped)."""
        entries = list(self._entries.values())
        self._entries.clear()
        loop = asyncio.get_running_loop()
        for entry in entries:
            if entry.loop is loop:
                await entry.channel.close()
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)

    def _open(self, address: str, tls: TlsSettings | None) -> Any:
        if tls is None:
            return grpc.aio.insecure_channel(address, options=self._options)
        options = self._options
        if tls.server_name:
            options = (*options, ("grpc.ssl_target_name_override", tls.server_name))
        return grpc.aio.secure_channel(address, self._credentials[tls].credentials, options=options)

    def _retire(self, entry: _Entry, *, grace: float | None = None) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is None or entry.loop is not running or entry.loop.is_closed():
            # A channel of another (possibly finished) loop cannot be awaited here; drop it.
            return
        task = running.create_task(entry.channel.close(grace))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
