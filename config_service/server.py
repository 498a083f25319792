"""Wires the parts into two gRPC servers and runs them: `create_server` builds, `serve` runs until SIGTERM.

Why two servers: RefreshService (the port registered in Cloud Map, called by the operator) and
ConfigService (the read API for applications) live on separate ports, each with its own authenticator and
allow-lists (one TokenReview cache and rate limit shared by both), so network policy and TLS can differ and
a flood of reads cannot starve the control channel. ConfigService is either authenticated or bound to a
loopback address (sidecar use); the settings refuse anything else unless --insecure-config-api says so.
Both ports reload rotated certificates before the next handshake (config_service.tls). Both carry the standard
grpc.health.v1 service: NOT_SERVING until the bootstrap has loaded every prefix, SERVING after, and
NOT_SERVING again from the first moment of shutdown. On SIGTERM the instance reports NOT_SERVING,
deregisters from Cloud Map if it registered itself, lets in-flight calls finish within the grace period,
and exits 0. An optional drain period between NOT_SERVING and refusing new calls gives load balancers time
to notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from config_service import collector, registration
from config_service.auth import (
    CONFIG_SERVICE_PREFIX,
    PROTECTED_SERVICE,
    AuthInterceptor,
    build_authenticator,
)
from config_service.bootstrap import bootstrap
from config_service.cache import ConfigCache
from config_service.config_servicer import ConfigServicer
from config_service.lifecycle import Lifecycle, Phase
from config_service.local_delivery import LocalDelivery
from config_service.metrics import Metrics
from config_service.parameter_store import ParameterStore
from config_service.refresh_servicer import RefreshServicer
from config_service.refresher import Refresher
from config_service.settings import Settings
from config_service.tls import ReloadingCertificate
from config_service.tokenreview import TokenReviewer, TokenReviews, kubernetes_token_reviewer
from config_service.ttl import TtlRefresher
from configrefresh.v1 import config_service_pb2_grpc, refresh_service_pb2_grpc

log = logging.getLogger(__name__)

REFRESH_SERVICE = "configrefresh.v1.RefreshService"
CONFIG_SERVICE = "configrefresh.v1.ConfigService"
_SERVER_OPTIONS = [("grpc.so_reuseport", 0)]  # a port already taken is an error, not a silent share


@dataclass
class Service:
    """A built, not yet started instance: both servers with their bound ports and every part."""

    settings: Settings
    cache: ConfigCache
    store: ParameterStore
    lifecycle: Lifecycle
    metrics: Metrics
    refresh_server: grpc.aio.Server
    config_server: grpc.aio.Server
    refresh_port: int
    config_port: int
    refresh_health: health_aio.HealthServicer
    config_health: health_aio.HealthServicer
    ttl: TtlRefresher
    metrics_port: int | None = None
    registration: registration.CloudMapRegistration | None = None
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    local: LocalDelivery | None = None  # issue 21: HTTP on loopback, files, reload hook
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Start both servers (reporting NOT_SERVING) and the metrics endpoint."""
        await self.refresh_server.start()
        await self.config_server.start()
        if self.health_server is not None:
            await self.health_server.start()
        if self.settings.metrics_enabled:
            self.metrics_port = self.metrics.serve(self.settings.host, self.settings.metrics_port)
        if self.local is not None:
            await self.local.start()
        log.info(
            "listening",
            extra={
                "refresh_address": f"{self.settings.host}:{self.refresh_port}",
                "config_address": f"{self.settings.config_bind_host}:{self.config_port}",
                "metrics_port": self.metrics_port,
                "health_port": self.health_port,
                "local_http_port": self.local.http_port if self.local else None,
                "auth_modes": list(self.settings.auth_modes) or ["insecure"],
                "config_auth_modes": list(self.settings.config_auth_modes)
                or (["loopback"] if self.settings.config_loopback else ["insecure"]),
                "prefixes": list(self.settings.prefixes),
            },
        )

    async def bootstrap(self, *, settle_collector: bool = False) -> None:
        """Load every prefix, then report SERVING, register in Cloud Map and start the TTL re-reads.
        `settle_collector` (the standalone process only): settle the garbage collector before SERVING,
        so its one full collection pauses no caller (config_service.collector)."""
        await bootstrap(
            cache=self.cache,
            store=self.store,
            prefixes=self.settings.prefixes,
            backoff_seconds=self.settings.bootstrap_backoff_seconds,
            backoff_max_seconds=self.settings.bootstrap_backoff_max_seconds,
        )
        if self.local is not None:
            await self.local.ready()  # the files exist before the instance reports SERVING
        if settle_collector:
            collector.settle()
        await self.lifecycle.set(Phase.SERVING)
        if self.registration is not None:
            await self.registration.register()
        self._tasks.append(asyncio.create_task(self.ttl.run(), name="ttl-refresher"))

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, deregister, finish in-flight calls within `grace`, then release everything."""
        grace = self.settings.grace_seconds if grace is None else grace
        log.info("shutting down", extra={"grace_seconds": grace})
        await self.lifecycle.set(Phase.STOPPING)
        if self.registration is not None and self.lifecycle.serving.is_set():
            await self.registration.deregister()
        for task in self._tasks:
            task.cancel()
        if self.local is not None:
            await self.local.stop()
        if self.settings.drain_seconds > 0:
            # Load balancers and health watchers see NOT_SERVING while reads are still answered.
            await asyncio.sleep(self.settings.drain_seconds)
        servers = [self.refresh_server, self.config_server]
        if self.health_server is not None:
            servers.append(self.health_server)
        await asyncio.gather(*(server.stop(grace) for server in servers))
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.metrics.stop()
        log.info("stopped")


async def create_server(
    settings: Settings,
    *,
    store: ParameterStore | None = None,
    reviewer: TokenReviewer | None = None,
) -> Service:
    """Build both servers on their ports (port 0 picks a free one) without starting them."""
    cache = ConfigCache()
    store = store or ParameterStore(settings)
    lifecycle = Lifecycle()
    metrics = Metrics(cache)
    refresher = Refresher(cache=cache, store=store, prefixes=settings.prefixes)

    reviews = None
    if settings.tokenreview_audience is not None:
        reviews = TokenReviews(
            reviewer=reviewer or kubernetes_token_reviewer(settings.kubeconfig),
            audience=settings.tokenreview_audience,
            cache_seconds=settings.tokenreview_cache_seconds,
            cache_size=settings.tokenreview_cache_size,
            rate_per_second=settings.tokenreview_rate,
            burst=settings.tokenreview_burst,
            metrics=metrics,
        )
    refresh_auth = build_authenticator(
        allowed_identities=settings.refresh_allowed_identities,
        mtls=settings.mtls,
        token_file=settings.refresh_token_file,
        reviews=reviews,
        tokenreview_allowed_users=settings.tokenreview_allowed_users,
        plaintext_tokens=settings.insecure_plaintext_tokens,
    )
    if refresh_auth is None:
        log.warning(
            "RefreshService accepts unauthenticated calls (--insecure-refresh); never do this in production"
        )
    config_auth = build_authenticator(
        allowed_identities=settings.config_allowed_identities,
        mtls=settings.config_client_ca_file is not None,
        token_file=settings.config_token_file,
        reviews=reviews,
        tokenreview_allowed_users=settings.config_tokenreview_allowed_users,
        tokenreview_allowed_groups=settings.config_tokenreview_allowed_groups,
        plaintext_tokens=settings.insecure_plaintext_tokens,
    )
    if config_auth is None and not settings.config_loopback:
        log.warning(
            "ConfigService answers unauthenticated callers on a network address (--insecure-config-api): "
            "every String value goes to anyone who reaches the port (SecureStrings are withheld)"
        )
    refresh_interceptors = (
        [AuthInterceptor(refresh_auth, service_prefix=PROTECTED_SERVICE, metrics=metrics)]
        if refresh_auth
        else []
    )
    config_interceptors = (
        [AuthInterceptor(config_auth, service_prefix=CONFIG_SERVICE_PREFIX, metrics=metrics)]
        if config_auth
        else []
    )

    refresh_server = grpc.aio.server(interceptors=refresh_interceptors, options=_SERVER_OPTIONS)
    config_server = grpc.aio.server(interceptors=config_interceptors, options=_SERVER_OPTIONS)
    refresh_service_pb2_grpc.add_RefreshServiceServicer_to_server(
        RefreshServicer(
            cache=cache,
            refresher=refresher,
            instance_id=settings.instance_id,
            lifecycle=lifecycle,
            metrics=metrics,
            accept_values=settings.refresh_accept_values,
        ),
        refresh_server,
    )
    config_service_pb2_grpc.add_ConfigServiceServicer_to_server(
        ConfigServicer(
            cache=cache,
            lifecycle=lifecycle,
            metrics=metrics,
            withhold_secrets=config_auth is None and not settings.config_loopback,
        ),
        config_server,
    )
    refresh_health = health_aio.HealthServicer()
    config_health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(refresh_health, refresh_server)
    health_pb2_grpc.add_HealthServicer_to_server(config_health, config_server)
    health_server = None
    health_port = None
    if settings.health_port is not None:
        # Health only, plaintext: kubelet gRPC probes cannot speak TLS, and health holds nothing secret.
        health_server = grpc.aio.server(options=_SERVER_OPTIONS)
        health_pb2_grpc.add_HealthServicer_to_server(config_health, health_server)
        health_port = _bind(health_server, settings.host, settings.health_port, None)
    for health, name in ((refresh_health, REFRESH_SERVICE), (config_health, CONFIG_SERVICE)):
        await _set_health(health, name, serving=False)
    lifecycle.add_listener(_health_listener(refresh_health, REFRESH_SERVICE))
    lifecycle.add_listener(_health_listener(config_health, CONFIG_SERVICE))

    refresh_port = _bind(
        refresh_server,
        settings.host,
        settings.refresh_port,
        _credentials(*settings.tls_files("refresh")),
    )
    config_port = _bind(
        config_server,
        settings.config_bind_host,
        settings.config_port,
        _credentials(*settings.tls_files("config")),
    )
    return Service(
        settings=settings,
        cache=cache,
        store=store,
        lifecycle=lifecycle,
        metrics=metrics,
        refresh_server=refresh_server,
        config_server=config_server,
        refresh_port=refresh_port,
        config_port=config_port,
        refresh_health=refresh_health,
        config_health=config_health,
        ttl=TtlRefresher(
            cache=cache,
            store=store,
            ttl_seconds=settings.ttl_seconds,
            jitter=settings.ttl_jitter,
            metrics=metrics,
        ),
        registration=registration.from_settings(settings, refresh_port=refresh_port),
        health_server=health_server,
        health_port=health_port,
        local=LocalDelivery.from_settings(settings, cache=cache, lifecycle=lifecycle, metrics=metrics),
    )


async def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; returns the process exit code (0 after a graceful stop)."""
    service = await create_server(settings)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    boot = asyncio.create_task(service.bootstrap(settle_collector=True), name="bootstrap")
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({boot, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if boot.done() and boot.exception() is not None:
        log.error("bootstrap failed", exc_info=boot.exception())
        await service.stop(grace=0)
        return 1
    await stopping
    log.info("signal received")
    boot.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await boot
    await service.stop()
    return 0


def _health_listener(health: health_aio.HealthServicer, name: str) -> Callable[[Phase], Awaitable[None]]:
    async def listener(phase: Phase) -> None:
        if phase is Phase.STOPPING:
            await health.enter_graceful_shutdown()
        else:
            await _set_health(health, name, serving=phase is Phase.SERVING)

    return listener


async def _set_health(health: health_aio.HealthServicer, name: str, *, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service_name in ("", name):
        await health.set(service_name, status)


def _bind(server: grpc.aio.Server, host: str, port: int, credentials: grpc.ServerCredentials | None) -> int:
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if not bound:
        raise RuntimeError(f"cannot listen on {address}")
    return int(bound)


def _credentials(
    cert_file: Path | None, key_file: Path | None, client_ca_file: Path | None
) -> grpc.ServerCredentials | None:
    """One port's TLS (mutual when a client CA is set); None for plaintext."""
    if cert_file is None or key_file is None:
        return None
    return ReloadingCertificate(
        cert_file=cert_file, key_file=key_file, client_ca_file=client_ca_file
    ).credentials()
