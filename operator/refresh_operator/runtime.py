"""Everything the handlers and background loops share, created once inside the operator's event loop.

grpc.aio channels belong to the loop that creates them, so the fan-out, the consumer and the retention
loop are built at kopf startup (not at import); the handlers reach them through this object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from refresh_operator import collector, kube, memory, metrics, retention
from refresh_operator.antientropy import AntiEntropy
from refresh_operator.aws import AwsClients, Blocking, make_clients
from refresh_operator.backoff import doubling
from refresh_operator.boundary import admission_from_settings
from refresh_operator.consumer import DRAIN_SECONDS, Consumer
from refresh_operator.context import OperatorContext
from refresh_operator.fanout import BreakerRegistry, ChannelPool, FanOut
from refresh_operator.fanout.tokens import TokenCache
from refresh_operator.kube import Kube, KubeError
from refresh_operator.leadership import Leadership, Peering
from refresh_operator.resync import Resync
from refresh_operator.rollouts import Rollouts
from refresh_operator.route_sync import RouteSync
from refresh_operator.routes import RouteIndex
from refresh_operator.settings import OperatorSettings
from refresh_operator.values import ValueCache

logger = logging.getLogger("refresh_operator.runtime")


class Runtime:
    def __init__(self, *, settings: OperatorSettings, namespaces: Sequence[str] | None) -> None:
        self.settings = settings
        self.namespaces = list(namespaces) if namespaces is not None else None
        self.routes = RouteIndex()
        self.admission = admission_from_settings(settings)
        self.tokens: TokenCache | None = None
        self.values = ValueCache()
        self.kube = Kube(pool=settings.executor_threads)
        self.blocking = Blocking(threads=settings.executor_threads)
        self._clients: AwsClients | None = None
        self._rollouts: Rollouts | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def rollouts(self) -> Rollouts:
        if self._rollouts is None:
            raise RuntimeError("the operator runtime has not started")
        return self._rollouts

    async def start(self, *, peerings: Sequence[Peering] = ()) -> None:
        """Build everything and start the background loops. `peerings`: the kopf peering objects this
        replica takes part in (none standalone); resync and retention run only while it is the active one,
        the consumer runs on every replica (competing consumers)."""
        self._stop = asyncio.Event()
        self._clients = await self.blocking.call(make_clients, self.settings)
        self.tokens = self._token_cache()
        idle = self.settings.channel_idle_seconds
        channels = ChannelPool(
            idle_seconds=idle,
            options=[("grpc.client_idle_timeout_ms", int(idle * 1000))],
            max_channels=self.settings.max_channels,
        )
        fanout = FanOut(channels=channels, breakers=BreakerRegistry(), tokens=self.tokens)
        leadership = Leadership(peerings, read_peering=self._read_peering)
        context = OperatorContext(
            settings=self.settings,
            clients=self._clients,
            blocking=self.blocking,
            kube=self.kube,
            routes=self.routes,
            values=self.values,
        )
        self._rollouts = Rollouts(context=context, fanout=fanout)
        metrics.serve(address=self.settings.metrics_address, port=self.settings.metrics_port)
        route_sync = RouteSync(index=self.routes, list_routes=self._list_routes, admit=self.admission.admit)
        await self._load_routes(route_sync)
        consumer = Consumer(context=context, refresh_routes=route_sync.refresh)
        resync = Resync(
            context=context,
            repair=AntiEntropy(context=context, fanout=fanout, policy_for=self._rollouts.policy).repair,
            leadership=leadership,
        )
        self._tasks = [
            asyncio.create_task(consumer.run(self._stop), name="config-refresh-consumer"),
            asyncio.create_task(resync.run(self._stop), name="config-refresh-resync"),
            asyncio.create_task(
                retention.run(
                    kube_api=self.kube,
                    blocking=self.blocking,
                    namespaces=self.namespaces,
                    max_age_seconds=self.settings.retention_seconds,
                    keep=self.settings.retention_keep,
                    interval=self.settings.retention_interval_seconds,
                    stop=self._stop,
                    leadership=leadership,
                ),
                name="config-refresh-retention",
            ),
            asyncio.create_task(
                memory.trim_periodically(self._stop, run=self.blocking.call), name="config-refresh-trim"
            ),
        ]
        collector.settle_after_startup()

    async def _read_peering(self, peering: Peering) -> dict[str, Any] | None:
        return await self.blocking.call(self.kube.get_peering, peering)

    def _token_cache(self) -> TokenCache | None:
        """Per-audience ServiceAccount tokens (TokenRequest), when the chart named the operator's account."""
        name, namespace = self.settings.service_account_name, self.settings.service_account_namespace
        if name is None or namespace is None:
            return None

        async def request(audience: str, expiration: int) -> tuple[str, float]:
            return await self.blocking.call(
                self.kube.request_token, namespace, name, audience=audience, expiration_seconds=expiration
            )

        return TokenCache(request, expiration_seconds=self.settings.token_expiration_seconds)

    async def _list_routes(self) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = []
        for namespace in self.namespaces if self.namespaces is not None else [None]:
            objects.extend(await self.blocking.call(self.kube.list, kube.ROUTES, namespace))
        return objects

    async def _load_routes(self, route_sync: RouteSync) -> None:
        """Index existing routes before the first message is consumed, so none is taken as unrouted."""
        delays = doubling(0.5, max_seconds=10)
        while True:
            try:
                objects = await self._list_routes()
                break
            except KubeError as error:
                logger.warning("Listing ConfigRoutes failed (%s); retrying", error)
                await asyncio.sleep(next(delays))
        route_sync.index_all(objects)
        logger.info("Indexed %d ConfigRoute(s)", len(self.routes))

    async def stop(self) -> None:
        """Stop consuming cleanly: wait for the long poll to return (and release what it brought) and for
        messages being handled, bounded by WaitTimeSeconds plus a margin; then cancel what is left."""
        self._stop.set()
        if self._tasks:
            grace = self.settings.wait_time_seconds + DRAIN_SECONDS + 5
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tasks = []
        self.blocking.shutdown()
