"""Embedding the cache and RefreshService in your own grpc.aio service.

Run it: `python -m config_service.examples.embedded` (or the file by path). It starts one gRPC server
that serves the application's own API (here: the standard health service stands in for it) next to
configrefresh.v1.RefreshService, pushes one refresh to itself as the operator would, reads the value
back from the cache the way application code does, and exits 0.

In your service, the three things to keep are:
1. one `ConfigCache` shared by your request handlers (read `cache.get(name)` per request; never lock);
2. a `Refresher` over that cache (give it a `ParameterStore` if you want INVALIDATE mode);
3. `RefreshServicer` added to a server the operator can reach, guarded by `AuthInterceptor`
   (skipped here for brevity; see docs/config-service.md). Load the cache at start with
   `config_service.bootstrap.bootstrap(...)` before you report SERVING.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from config_service.cache import ConfigCache
from config_service.refresh_servicer import RefreshServicer
from config_service.refresher import Refresher
from configrefresh.v1 import refresh_service_pb2, refresh_service_pb2_grpc

PREFIX = "/config-service/acme/"


async def main() -> int:
    # 1. The cache your handlers read from.
    cache = ConfigCache()
    # 2. The refresh logic (store=None: VALUE mode only; pass ParameterStore(settings) for INVALIDATE).
    refresher = Refresher(cache=cache, store=None, prefixes=[PREFIX])
    # 3. The RefreshService on your own server, next to your own services.
    server = grpc.aio.server()
    refresh_service_pb2_grpc.add_RefreshServiceServicer_to_server(
        RefreshServicer(cache=cache, refresher=refresher, instance_id="embedded-example"), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        # What the operator does: push one change.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = refresh_service_pb2_grpc.RefreshServiceStub(channel)
            answer = await stub.Refresh(
                refresh_service_pb2.RefreshRequest(
                    refresh_id="example",
                    parameter_name=PREFIX + "feature_flag",
                    version=1,
                    operation=refresh_service_pb2.OPERATION_UPSERT,
                    payload_mode=refresh_service_pb2.PAYLOAD_MODE_VALUE,
                    value="on",
                ),
                timeout=5,
            )
        # What your request handlers do: read from the cache, no lock, no wait.
        entry = cache.get(PREFIX + "feature_flag")
        print(f"refresh result: {refresh_service_pb2.RefreshResult.Name(answer.result)}")
        print(f"feature_flag = {entry.value if entry else None!r} (version {entry.version if entry else 0})")
        return 0 if entry is not None and entry.value == "on" else 1
    finally:
        await server.stop(grace=1)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
