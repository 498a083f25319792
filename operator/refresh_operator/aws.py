"""AWS clients and the thread pool their blocking calls run on.

boto3 is synchronous. Every call goes through `Blocking.call`, which runs it on one executor sized for the
consumer's in-flight messages plus the rollouts' discovery calls, so the kopf event loop never waits on
the network. The 20 s SQS long poll is the exception: it runs on a daemon thread of its own (see
consumer.py), so a shutdown never waits for a poll to return.

Credentials come from the standard chain (IRSA web identity on EKS); retries use botocore's `standard` or
`adaptive` mode. Against a local endpoint (moto), host-prefix injection is turned off, because Cloud Map's
DiscoverInstances otherwise sends its requests to `data-<endpoint>`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import boto3
import botocore.config

from refresh_operator.settings import OperatorSettings

P = ParamSpec("P")
T = TypeVar("T")


class Blocking:
    """Runs blocking calls (boto3, the Kubernetes client) on a dedicated, bounded thread pool."""

    def __init__(self, *, threads: int) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="config-refresh-io"
        )

    async def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclasses.dataclass(frozen=True)
class AwsClients:
    """The three AWS APIs the operator talks to."""

    sqs: Any
    ssm: Any
    servicediscovery: Any


def client_config(settings: OperatorSettings, *, pool: int) -> botocore.config.Config:
    return botocore.config.Config(
        region_name=settings.region,
        retries={"mode": settings.aws_retry_mode, "total_max_attempts": settings.aws_max_attempts},
        inject_host_prefix=settings.aws_endpoint_url is None,
        max_pool_connections=pool,
        # The long poll holds its connection for WaitTimeSeconds; the read timeout must exceed it.
        read_timeout=settings.wait_time_seconds + 10,
        connect_timeout=5,
    )


def make_clients(settings: OperatorSettings) -> AwsClients:
    session = boto3.session.Session(region_name=settings.region)
    config = client_config(settings, pool=settings.executor_threads + 2)

    def make(service: str) -> Any:
        return session.client(service, endpoint_url=settings.aws_endpoint_url, config=config)

    return AwsClients(sqs=make("sqs"), ssm=make("ssm"), servicediscovery=make("servicediscovery"))


async def in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run fn on a fresh daemon thread; the awaiting task may be cancelled without waiting for it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            result = fn()
        except BaseException as error:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, False, error)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, True, result)

    threading.Thread(target=work, name="config-refresh-sqs-poll", daemon=True).start()
    return await future
