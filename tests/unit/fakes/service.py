"""config_service's servicers on a real in-process gRPC server (no AWS, no auth), and stubs to call them.

`serving(cache, ...)` serves ConfigService over `cache` and, unless `refresh=False`, RefreshService with a
Refresher that has no store (a refresh carries its value), on 127.0.0.1 with a free port, for the
duration of an `async with`; what it yields has the cache, the lifecycle and one stub of each service.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from config_service.cache import ConfigCache
from config_service.config_servicer import ConfigServicer
from config_service.lifecycle import Lifecycle
from config_service.refresh_servicer import RefreshServicer
from config_service.refresher import Refresher
from configrefresh.v1 import config_service_pb2_grpc as cpb_grpc
from configrefresh.v1 import refresh_service_pb2_grpc as rpb_grpc

PREFIX = "/config-service/"


@dataclass
class Served:
    cache: ConfigCache
    lifecycle: Lifecycle | None
    config: cpb_grpc.ConfigServiceStub
    refresh: rpb_grpc.RefreshServiceStub

    @property
    def required_lifecycle(self) -> Lifecycle:
        """The lifecycle `serving` was given, for the tests that gave one."""
        assert self.lifecycle is not None, "served without a lifecycle"
        return self.lifecycle


@contextlib.asynccontextmanager
async def serving(
    cache: ConfigCache,
    lifecycle: Lifecycle | None = None,
    *,
    withhold_secrets: bool = False,
    refresh: bool = True,
) -> AsyncIterator[Served]:
    server = grpc.aio.server()
    cpb_grpc.add_ConfigServiceServicer_to_server(
        ConfigServicer(cache=cache, lifecycle=lifecycle, withhold_secrets=withhold_secrets), server
    )
    if refresh:
        rpb_grpc.add_RefreshServiceServicer_to_server(
            RefreshServicer(
                cache=cache,
                refresher=Refresher(cache=cache, store=None, prefixes=[PREFIX]),
                instance_id="unit",
                lifecycle=lifecycle,
            ),
            server,
        )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(
            cache, lifecycle, cpb_grpc.ConfigServiceStub(channel), rpb_grpc.RefreshServiceStub(channel)
        )
    finally:
        await channel.close()
        await server.stop(None)
