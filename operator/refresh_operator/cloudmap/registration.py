"""Registration: podSync's writes to Cloud Map and the reads they are planned against.

- Cloud Map's write APIs are asynchronous (RegisterInstance and DeregisterInstance return an operation
  id): a write is done only when GetOperation says SUCCESS, so podSync never reports a pod as synced
  while the registration could still fail.
- Every call goes through ``client.Calls`` (throttling backoff with full jitter, off the event loop).
- Errors that a person must fix (missing namespace or service, a service without HealthCheckCustomConfig)
  become ``CloudMapError`` with a ``reason`` for machines and a ``message`` that says what to do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from refresh_operator.backoff import Backoff, doubling
from refresh_operator.cloudmap.client import (
    CALL_SECONDS,
    INIT_HEALTH_ATTRIBUTE,
    Calls,
    CloudMapError,
    Instance,
    InstanceNotFound,
    ServiceRef,
    error_code,
    find_service,
    health_statuses,
    list_attributes,
)


class Registrar:
    """Async Cloud Map operations for podSync: service lookup, instance listing, registration and health."""

    def __init__(
        self,
        client: Any,
        *,
        region: str | None = None,
        backoff: Backoff | None = None,
        max_retries: int = 8,
        operation_timeout_seconds: float = 30.0,
    ) -> None:
        self._call = Calls(client, backoff=backoff, max_retries=max_retries)
        self._region = region or getattr(getattr(client, "meta", None), "region_name", None) or "?"
        self._operation_timeout = operation_timeout_seconds

    async def _wait_operation(self, operation_id: str) -> None:
        """Poll GetOperation until the operation succeeds; raise if it fails or takes too long."""
        deadline = time.monotonic() + self._operation_timeout
        delays = doubling(0.02, max_seconds=1.0)
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
            await asyncio.sleep(next(delays))

    async def _write(self, api: str, **params: Any) -> None:
        """A write API returning an OperationId, waited to completion; DuplicateRequest waits and retries."""
        started = time.monotonic()
        for _ in range(3):
            try:
                response = await self._call(api, **params)
            except ClientError as error:
                duplicate = error.response.get("DuplicateOperationId")
                if error_code(error) != "DuplicateRequest" or not duplicate:
                    raise
                await self._wait_operation(str(duplicate))
                continue
            await self._wait_operation(str(response["OperationId"]))
            CALL_SECONDS.labels(api).observe(time.monotonic() - started)
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
            attrs[INIT_HEALTH_ATTRIBUTE] = "UNHEALTHY"
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
        CALL_SECONDS.labels("UpdateInstanceCustomHealthStatus").observe(time.monotonic() - started)

    async def deregister(self, service_id: str, instance_id: str) -> None:
        """Deregister; an instance that is already gone counts as done."""
        try:
            await self._write("DeregisterInstance", ServiceId=service_id, InstanceId=instance_id)
        except ClientError as error:
            if error_code(error) == "InstanceNotFound":
                return
            raise _translate(error, "DeregisterInstance", service_id, instance_id) from error

    async def list_instances(self, service_id: str) -> dict[str, Instance]:
        """Every instance of the service with its attributes and custom health status."""
        try:
            attributes = await list_attributes(self._call, service_id)
            health = await health_statuses(self._call, service_id) if attributes else {}
        except ClientError as error:
            raise _translate(error, "ListInstances", service_id) from error
        return {
            instance_id: Instance(
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
            lookup = await find_service(self._call, namespace_name, service_name)
        except ClientError as error:
            raise _translate(error, "ListServices", service_name) from error
        if not lookup.namespace_ids:
            raise CloudMapError(
                "NamespaceNotFound",
                f'Cloud Map namespace "{namespace_name}" does not exist {where}: create it (the '
                "deploy/aws CloudFormation template does) or correct spec.discovery.cloudMap.namespace",
            )
        service = lookup.service
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
            namespace_id=str(service["NamespaceId"]),
            namespace_name=namespace_name,
            service_name=service_name,
        )


def _translate(error: ClientError, api: str, service: str, instance: str | None = None) -> CloudMapError:
    code = error_code(error)
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
