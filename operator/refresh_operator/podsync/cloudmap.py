"""The only module that talks to Cloud Map.

Why it looks the way it does:

- boto3 blocks, so every call runs in ``asyncio.to_thread``; the event loop serves every route and pod.
- Cloud Map's write APIs are asynchronous (RegisterInstance and DeregisterInstance return an operation
  id): a write is done only when GetOperation says SUCCESS, so podSync never reports a pod as synced
  while the registration could still fail.
- Cloud Map's API quotas are low and shared per account; throttling (ThrottlingException,
  RequestLimitExceeded, TooManyRequestsException) is retried here with exponential backoff and full
  jitter, so a burst of pod events cannot synchronise into a retry storm. botocore's own retries are off
  for the same reason: one retry policy, visible in metrics.
- Errors that a person must fix (missing namespace or service, a service without HealthCheckCustomConfig)
  become ``CloudMapError`` with a ``reason`` for machines and a ``message`` that says what to do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from refresh_operator.podsync import metrics
from refresh_operator.podsync.model import ATTR_INIT_HEALTH
from refresh_operator.podsync.reconcile import ActualInstance
from refresh_operator.settings import OperatorSettings

THROTTLING_CODES = frozenset(
    {"ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "Throttling"}
)
TRANSIENT_CODES = frozenset({"ServiceUnavailable", "InternalFailure", "InternalServerError"})


class CloudMapError(Exception):
    """A Cloud Map failure podSync reports on the route: ``reason`` (CamelCase) and a human message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InstanceNotFound(CloudMapError):
    """The instance podSync meant to update is not registered (any more)."""


@dataclasses.dataclass(frozen=True)
class ServiceRef:
    """A resolved Cloud Map service."""

    service_id: str
    namespace_id: str
    namespace_name: str
    service_name: str


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n))."""

    base_seconds: float = 0.1
    cap_seconds: float = 5.0

    def delay(self, attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        return rng(0.0, min(self.cap_seconds, self.base_seconds * (2**attempt)))


def make_client(settings: OperatorSettings) -> Any:
    """A servicediscovery client using the standard credential chain (IRSA on EKS)."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=20,
        # Local endpoints (moto) cannot serve the "data-" host prefix of the discovery APIs.
        inject_host_prefix=settings.aws_endpoint_url is None,
    )
    return boto3.client(
        "servicediscovery",
        region_name=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        config=config,
    )


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class CloudMap:
    """Async Cloud Map operations for podSync (implements ``reconcile.InstanceWriter``)."""

    def __init__(
        self,
        client: Any,
        *,
        region: str | None = None,
        backoff: Backoff | None = None,
        max_retries: int = 8,
        operation_timeout_seconds: float = 30.0,
    ) -> None:
        self._client = client
        self._region = region or getattr(getattr(client, "meta", None), "region_name", None) or "?"
        self._backoff = backoff or Backoff()
        self._max_retries = max_retries
        self._operation_timeout = operation_timeout_seconds

    @classmethod
    def from_settings(cls, settings: OperatorSettings) -> CloudMap:
        return cls(make_client(settings), region=settings.region)

    async def _call(self, api: str, **params: Any) -> dict[str, Any]:
        """One API call in a thread, with backoff on throttling, transient server and network errors."""
        method = getattr(self._client, _snake(api))
        attempt = 0
        while True:
            try:
                result: dict[str, Any] = await asyncio.to_thread(method, **params)
            except ClientError as error:
                code = _error_code(error)
                retryable = code in THROTTLING_CODES or code in TRANSIENT_CODES
                metrics.CLOUDMAP_CALLS.labels(api, "throttled" if code in THROTTLING_CODES else "error").inc()
                if not retryable:
                    raise
                if attempt >= self._max_retries:
                    raise CloudMapError(
                        "Throttled" if code in THROTTLING_CODES else "CloudMapUnavailable",
                        f"Cloud Map {api} still failing with {code} after {attempt + 1} attempts; "
                        "the next event or reconcile retries (raise the account's Cloud Map API quota if "
                        "this persists)",
                    ) from error
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1
                continue
            except BotoCoreError as error:
                # A read timeout, a refused or reset connection: no answer from Cloud Map, retried like a
                # transient server error (registration and health updates are idempotent per instance id).
                metrics.CLOUDMAP_CALLS.labels(api, "error").inc()
                if attempt >= self._max_retries:
                    raise CloudMapError(
                        "CloudMapUnreachable",
                        f"Cloud Map {api} failed: {type(error).__name__}: {error} after {attempt + 1} "
                        "attempts; the next event or reconcile retries",
                    ) from error
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1
                continue
            metrics.CLOUDMAP_CALLS.labels(api, "ok").inc()
            return result

    async def _wait_operation(self, operation_id: str) -> None:
        """Poll GetOperation until the operation succeeds; raise if it fails or takes too long."""
        deadline = time.monotonic() + self._operation_timeout
        delay = 0.02
        while True:
            operation = (await self._call("GetOperation", OperationId=operation_id))["Operation"]
            status = operation.get("Status")
            if status == "SUCCESS":
                return
            if status == "FAIL":
                raise CloudMapError(
                    "OperationFailed",
                    f"Cloud Map operation {operation.get('Type', '')} {operation_id} failed: "
                    f"{operation.get('ErrorCode', '')} {operation.get('ErrorMessage', '')}".strip(),
                )
            if time.monotonic() >= deadline:
                raise CloudMapError(
                    "OperationTimeout",
                    f"Cloud Map operation {operation_id} still {status} "
                    f"after {self._operation_timeout:.0f} s",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _write(self, api: str, **params: Any) -> None:
        """A write API returning an OperationId, waited to completion; DuplicateRequest waits and retries."""
        started = time.monotonic()
        for _ in range(3):
            try:
                response = await self._call(api, **params)
            except ClientError as error:
                duplicate = error.response.get("DuplicateOperationId")
                if _error_code(error) != "DuplicateRequest" or not duplicate:
                    raise
                await self._wait_operation(str(duplicate))
                continue
            await self._wait_operation(str(response["OperationId"]))
            metrics.CLOUDMAP_CALL_SECONDS.labels(api).observe(time.monotonic() - started)
            return
        raise CloudMapError(
            "OperationConflict", f"Cloud Map {api} kept conflicting with operations in progress"
        )

    async def register(
        self,
        service_id: str,
        instance_id: str,
        attributes: Mapping[str, str],
        *,
        healthy: bool,
        replace: bool = False,
    ) -> None:
        """Register, or re-register with the same id (which replaces the attributes), then settle health.

        A new, healthy instance needs one call (custom health starts HEALTHY). Otherwise the registration
        asks for the initial status and the custom health is set explicitly afterwards, which also covers
        a re-registered instance whose previous status Cloud Map may keep.
        """
        attrs = dict(attributes)
        if not healthy:
            attrs[ATTR_INIT_HEALTH] = "UNHEALTHY"
        try:
            await self._write(
                "RegisterInstance", ServiceId=service_id, InstanceId=instance_id, Attributes=attrs
            )
        except ClientError as error:
            raise _translate(error, "RegisterInstance", service_id) from error
        if replace or not healthy:
            await self.set_health(service_id, instance_id, healthy)

    async def set_health(self, service_id: str, instance_id: str, healthy: bool) -> None:
        started = time.monotonic()
        try:
            await self._call(
                "UpdateInstanceCustomHealthStatus",
                ServiceId=service_id,
                InstanceId=instance_id,
                Status="HEALTHY" if healthy else "UNHEALTHY",
            )
        except ClientError as error:
            raise _translate(error, "UpdateInstanceCustomHealthStatus", service_id, instance_id) from error
        metrics.CLOUDMAP_CALL_SECONDS.labels("UpdateInstanceCustomHealthStatus").observe(
            time.monotonic() - started
        )

    async def deregister(self, service_id: str, instance_id: str) -> None:
        """Deregister; an instance that is already gone counts as done."""
        try:
            await self._write("DeregisterInstance", ServiceId=service_id, InstanceId=instance_id)
        except ClientError as error:
            if _error_code(error) == "InstanceNotFound":
                return
            raise _translate(error, "DeregisterInstance", service_id, instance_id) from error

    async def list_instances(self, service_id: str) -> dict[str, ActualInstance]:
        """Every instance of the service with its attributes and custom health status."""
        try:
            attributes: dict[str, dict[str, str]] = {}
            token: str | None = None
            while True:
                params: dict[str, Any] = {"ServiceId": service_id, "MaxResults": 100}
                if token:
                    params["NextToken"] = token
                page = await self._call("ListInstances", **params)
                for instance in page.get("Instances", []):
                    attributes[str(instance["Id"])] = dict(instance.get("Attributes") or {})
                token = page.get("NextToken")
                if not token:
                    break
            health: dict[str, str] = {}
            token = None
            while attributes:
                params = {"ServiceId": service_id, "MaxResults": 100}
                if token:
                    params["NextToken"] = token
                page = await self._call("GetInstancesHealthStatus", **params)
                health.update({str(k): str(v) for k, v in (page.get("Status") or {}).items()})
                token = page.get("NextToken")
                if not token:
                    break
        except ClientError as error:
            raise _translate(error, "ListInstances", service_id) from error
        return {
            instance_id: ActualInstance(
                instance_id=instance_id,
                attributes=attrs,
                healthy=None if instance_id not in health else health[instance_id] == "HEALTHY",
            )
            for instance_id, attrs in attributes.items()
        }

    async def resolve_service(self, namespace_name: str, service_name: str) -> ServiceRef:
        """Find the service by names and check podSync can use it; else a CloudMapError saying what to do."""
        where = f"in region {self._region}"
        try:
            namespace_id = await self._find_namespace(namespace_name)
            if namespace_id is None:
                raise CloudMapError(
                    "NamespaceNotFound",
                    f'Cloud Map namespace "{namespace_name}" does not exist {where}: create it (the '
                    "deploy/aws CloudFormation template does) or correct spec.discovery.cloudMap.namespace",
                )
            service = await self._find_service(namespace_id, service_name)
        except ClientError as error:
            raise _translate(error, "ListServices", service_name) from error
        if service is None:
            raise CloudMapError(
                "ServiceNotFound",
                f'Cloud Map service "{service_name}" does not exist in namespace "{namespace_name}" {where}: '
                "create it with HealthCheckCustomConfig (the deploy/aws CloudFormation template does) or "
                "correct spec.discovery.cloudMap.service",
            )
        if service.get("HealthCheckCustomConfig") is None:  # present, even as {}, is enough
            raise CloudMapError(
                "HealthCheckCustomConfigMissing",
                f'Cloud Map service "{service_name}" in namespace "{namespace_name}" has no '
                "HealthCheckCustomConfig, so podSync cannot mark not-Ready pods UNHEALTHY; Cloud Map cannot "
                "add it to an existing service: recreate the service with HealthCheckCustomConfig {} (the "
                "deploy/aws CloudFormation template does)",
            )
        return ServiceRef(
            service_id=str(service["Id"]),
            namespace_id=namespace_id,
            namespace_name=namespace_name,
            service_name=service_name,
        )

    async def _find_namespace(self, name: str) -> str | None:
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Filters": [{"Name": "NAME", "Values": [name], "Condition": "EQ"}]}
            if token:
                params["NextToken"] = token
            page = await self._call("ListNamespaces", **params)
            for namespace in page.get("Namespaces", []):
                if namespace.get("Name") == name:
                    return str(namespace["Id"])
            token = page.get("NextToken")
            if not token:
                return None

    async def _find_service(self, namespace_id: str, name: str) -> dict[str, Any] | None:
        token: str | None = None
        while True:
            params: dict[str, Any] = {
                "Filters": [{"Name": "NAMESPACE_ID", "Values": [namespace_id], "Condition": "EQ"}]
            }
            if token:
                params["NextToken"] = token
            page = await self._call("ListServices", **params)
            for summary in page.get("Services", []):
                if summary.get("Name") != name:
                    continue
                # ServiceSummary has no NamespaceId (and some endpoints ignore the filter): confirm.
                service: dict[str, Any] = (await self._call("GetService", Id=summary["Id"]))["Service"]
                if service.get("NamespaceId") == namespace_id:
                    return service
            token = page.get("NextToken")
            if not token:
                return None


def _snake(api: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in api).lstrip("_")


def _translate(error: ClientError, api: str, service: str, instance: str | None = None) -> CloudMapError:
    code = _error_code(error)
    message = str(error.response.get("Error", {}).get("Message", "")) or code
    if code == "ServiceNotFound":
        return CloudMapError(
            "ServiceNotFound",
            f"Cloud Map service {service} no longer exists ({api}); recreate it with HealthCheckCustomConfig "
            "or correct spec.discovery.cloudMap.service",
        )
    if code == "CustomHealthNotFound":
        return CloudMapError(
            "HealthCheckCustomConfigMissing",
            f"Cloud Map service {service} has no HealthCheckCustomConfig ({api}); "
            "recreate the service with it",
        )
    if code == "InstanceNotFound":
        return InstanceNotFound(
            "InstanceNotFound", f"Cloud Map instance {instance} is not registered ({api})"
        )
    if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException"):
        return CloudMapError(
            "AccessDenied",
            f"Cloud Map {api} was denied: give the operator's IAM role servicediscovery:{api} ({message})",
        )
    return CloudMapError("CloudMapError", f"Cloud Map {api} failed: {code}: {message}")
