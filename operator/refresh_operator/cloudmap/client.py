"""The Cloud Map client both users share: how calls are made, retried and looked up, and what fails.

- boto3 blocks, so every call runs in a worker thread (``asyncio.to_thread``); the event loop serves
  every route, pod and rollout.
- ``Calls`` retries throttling (ThrottlingException, RequestLimitExceeded, TooManyRequestsException),
  transient server errors and network errors with the operator's one backoff (full jitter), so a burst
  of callers cannot synchronise into a retry storm. A client built by ``make_client`` has botocore's own
  retries off for the same reason: one retry policy, visible in metrics.
- ``find_service`` and ``list_attributes``/``health_statuses`` are the look-ups discovery and
  registration both need, written once over any ``Call``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter, Histogram

from refresh_operator.backoff import Backoff

IPV4_ATTRIBUTE = "AWS_INSTANCE_IPV4"
PORT_ATTRIBUTE = "AWS_INSTANCE_PORT"
INIT_HEALTH_ATTRIBUTE = "AWS_INIT_HEALTH_STATUS"

THROTTLING_CODES = frozenset(
    {"ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "Throttling"}
)
TRANSIENT_CODES = frozenset({"ServiceUnavailable", "InternalFailure", "InternalServerError"})

CALLS = Counter(
    "config_refresh_podsync_cloudmap_calls_total",
    "Cloud Map API calls made by podSync, by API and outcome (ok, throttled, error).",
    ["api", "outcome"],
)
CALL_SECONDS = Histogram(
    "config_refresh_podsync_cloudmap_call_seconds",
    "Time of one podSync write to Cloud Map, including throttling backoff and waiting for the operation.",
    ["api"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class CloudMapError(Exception):
    """A Cloud Map failure reported on a route: ``reason`` (CamelCase) and a human message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InstanceNotFound(CloudMapError):
    """The instance meant to be updated is not registered (any more)."""


@dataclasses.dataclass(frozen=True)
class Instance:
    """An instance as Cloud Map holds it. ``healthy`` is None when Cloud Map reported no status."""

    instance_id: str
    attributes: Mapping[str, str]
    healthy: bool | None


@dataclasses.dataclass(frozen=True)
class ServiceRef:
    """A resolved Cloud Map service."""

    service_id: str
    namespace_id: str
    namespace_name: str
    service_name: str


class Call(Protocol):
    """One Cloud Map API call by its API name (``"ListServices"``), awaited off the event loop."""

    def __call__(self, api: str, /, **params: Any) -> Awaitable[dict[str, Any]]: ...


def make_client(*, region: str | None, endpoint_url: str | None) -> Any:
    """A servicediscovery client with botocore's retries off, using the standard credential chain (IRSA on
    EKS). Blocking (reads credentials and models): call it off the event loop."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=20,
        # Local endpoints (moto) cannot serve the "data-" host prefix of the discovery APIs.
        inject_host_prefix=endpoint_url is None,
    )
    return boto3.client("servicediscovery", region_name=region, endpoint_url=endpoint_url, config=config)


def snake(api: str) -> str:
    """``ListServices`` → ``list_services``: the boto3 method of an API."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in api).lstrip("_")


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def describe(error: Exception) -> str:
    """``Code: message`` of an AWS error, else the exception's type and text."""
    if isinstance(error, ClientError):
        detail = error.response.get("Error", {})
        return f"{detail.get('Code', 'ClientError')}: {detail.get('Message', '')}".rstrip(": ")
    return f"{type(error).__name__}: {error}"


def plain_call(client: Any) -> Call:
    """Calls without retries of their own (the client's configuration decides), each in a thread."""

    async def call(api: str, /, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = await asyncio.to_thread(getattr(client, snake(api)), **params)
        return result

    return call


class Calls:
    """Calls in a thread with backoff on throttling, transient server errors and network errors."""

    def __init__(self, client: Any, *, backoff: Backoff | None = None, max_retries: int = 8) -> None:
        self.client = client
        self._backoff = backoff or Backoff()
        self._max_retries = max_retries

    async def __call__(self, api: str, /, **params: Any) -> dict[str, Any]:
        method = getattr(self.client, snake(api))
        attempt = 0
        while True:
            try:
                result: dict[str, Any] = await asyncio.to_thread(method, **params)
            except ClientError as error:
                code = error_code(error)
                CALLS.labels(api, "throttled" if code in THROTTLING_CODES else "error").inc()
                if code not in THROTTLING_CODES and code not in TRANSIENT_CODES:
                    raise
                if attempt >= self._max_retries:
                    raise CloudMapError(
                        "Throttled" if code in THROTTLING_CODES else "CloudMapUnavailable",
                        f"Cloud Map {api} still failing with {code} after {attempt + 1} attempts; "
                        "the next event or reconcile retries (raise the account's Cloud Map API quota if "
                        "this persists)",
                    ) from error
            except BotoCoreError as error:
                # A read timeout, a refused or reset connection: no answer from Cloud Map, retried like a
                # transient server error (registration and health updates are idempotent per instance id).
                CALLS.labels(api, "error").inc()
                if attempt >= self._max_retries:
                    raise CloudMapError(
                        "CloudMapUnreachable",
                        f"Cloud Map {api} failed: {type(error).__name__}: {error} after {attempt + 1} "
                        "attempts; the next event or reconcile retries",
                    ) from error
            else:
                CALLS.labels(api, "ok").inc()
                return result
            attempt += 1
            await asyncio.sleep(self._backoff.delay(attempt))


@dataclasses.dataclass(frozen=True)
class ServiceLookup:
    """What ``find_service`` found: the ids of the namespaces of that name, and the service (GetService's
    ``Service``) if one of them holds it."""

    namespace_ids: list[str]
    service: dict[str, Any] | None


async def find_service(call: Call, namespace_name: str, service_name: str) -> ServiceLookup:
    """Find a service by its namespace's name (or HTTP name) and its own name."""
    namespace_ids: list[str] = []
    async for namespace in _pages(call, "ListNamespaces", "Namespaces"):
        http_name = (namespace.get("Properties") or {}).get("HttpProperties", {}).get("HttpName")
        if namespace_name in (namespace.get("Name"), http_name):
            namespace_ids.append(str(namespace["Id"]))
    # ListServices summaries carry no namespace id: filter by it (one id per filter), then confirm with
    # GetService, since not every implementation honours the filter.
    for namespace_id in sorted(set(namespace_ids)):
        where = [{"Name": "NAMESPACE_ID", "Values": [namespace_id], "Condition": "EQ"}]
        async for summary in _pages(call, "ListServices", "Services", Filters=where):
            if summary.get("Name") != service_name:
                continue
            service: dict[str, Any] = (await call("GetService", Id=summary["Id"]))["Service"]
            if service.get("NamespaceId") == namespace_id:
                return ServiceLookup(namespace_ids, service)
    return ServiceLookup(namespace_ids, None)


async def list_attributes(call: Call, service_id: str) -> dict[str, dict[str, str]]:
    """Every instance of the service: its attributes by instance id."""
    return {
        str(instance["Id"]): dict(instance.get("Attributes") or {})
        async for instance in _pages(call, "ListInstances", "Instances", ServiceId=service_id, MaxResults=100)
    }


async def health_statuses(call: Call, service_id: str) -> dict[str, str]:
    """The health status (HEALTHY, UNHEALTHY, UNKNOWN) of every instance of the service, by id."""
    replies = _page_replies(call, "GetInstancesHealthStatus", ServiceId=service_id, MaxResults=100)
    return {
        str(instance_id): str(status)
        async for page in replies
        for instance_id, status in (page.get("Status") or {}).items()
    }


async def _page_replies(call: Call, api: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
    """Every reply of a paginated API, following NextToken."""
    token: str | None = None
    while True:
        page = await call(api, **params, **({"NextToken": token} if token else {}))
        yield page
        token = page.get("NextToken")
        if not token:
            return


async def _pages(call: Call, api: str, key: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
    """The items under ``key`` of every page of a paginated API."""
    async for page in _page_replies(call, api, **params):
        for item in page.get(key, []):
            yield item
