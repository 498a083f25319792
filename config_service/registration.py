"""Optional Cloud Map self-registration, for instances that do not run on Kubernetes.

Why optional: on EKS the operator registers pods from their Ready state (pod sync), which is the better
signal. An instance elsewhere (EC2, ECS without service discovery) can register itself at start with
`AWS_INSTANCE_IPV4` / `AWS_INSTANCE_PORT` (the refresh port) plus configured attributes, and deregisters
on shutdown. Blocking boto3 calls run in a thread. Registration is retried with capped exponential
backoff until Cloud Map answers: a read timeout, a reset connection or a throttle must not end an instance
that is already serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from config_service.backoff import equal_jitter
from config_service.parameter_store import error_code
from config_service.settings import Settings

log = logging.getLogger(__name__)


class CloudMapRegistration:
    """Registers one instance in one Cloud Map service, and deregisters it."""

    def __init__(
        self,
        *,
        service_id: str,
        instance_id: str,
        ip: str,
        port: int,
        attributes: Mapping[str, str],
        client: Any,
        backoff_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
    ) -> None:
        self._backoff = backoff_seconds
        self._backoff_max = backoff_max_seconds
        self._service_id = service_id
        self._instance_id = instance_id
        self._attributes = {**attributes, "AWS_INSTANCE_IPV4": ip, "AWS_INSTANCE_PORT": str(port)}
        self._client = client

    async def register(self) -> None:
        """RegisterInstance (idempotent for the same instance id), retried until Cloud Map accepts it."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await asyncio.to_thread(
                    self._client.register_instance,
                    ServiceId=self._service_id,
                    InstanceId=self._instance_id,
                    Attributes=self._attributes,
                )
                break
            except (ClientError, BotoCoreError) as error:
                delay = equal_jitter(attempt, base_seconds=self._backoff, max_seconds=self._backoff_max)
                log.warning(
                    "Cloud Map registration failed; retrying",
                    extra={
                        "attempt": attempt,
                        "error": type(error).__name__,
                        "code": error_code(error),
                        "retry_in_seconds": round(delay, 3),
                    },
                )
                await asyncio.sleep(delay)
        log.info(
            "registered in Cloud Map",
            extra={"service_id": self._service_id, "instance_id": self._instance_id},
        )

    async def deregister(self) -> None:
        """DeregisterInstance; failures are logged, never raised (shutdown must go on)."""
        try:
            await asyncio.to_thread(
                self._client.deregister_instance, ServiceId=self._service_id, InstanceId=self._instance_id
            )
            log.info("deregistered from Cloud Map", extra={"instance_id": self._instance_id})
        except Exception as error:
            log.warning("Cloud Map deregistration failed", extra={"error": type(error).__name__})


def owned_attributes(attributes: Mapping[str, str], namespace: str | None) -> dict[str, str]:
    """The configured attributes plus `k8s-namespace`: the operator refreshes an instance only for routes
    of the namespace that owns it (unless the admin marked the Cloud Map service shared)."""
    result = dict(attributes)
    if namespace:
        result["k8s-namespace"] = namespace
    return result


def from_settings(settings: Settings, *, refresh_port: int) -> CloudMapRegistration | None:
    """The registration the settings ask for, or None (the default)."""
    if settings.cloudmap_service_id is None:
        return None
    client = boto3.session.Session().client(
        "servicediscovery",
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=Config(
            retries={"mode": settings.aws_retry_mode, "total_max_attempts": settings.aws_max_attempts},
            read_timeout=settings.aws_read_timeout_seconds,
        ),
    )
    return CloudMapRegistration(
        service_id=settings.cloudmap_service_id,
        instance_id=settings.instance_id,
        ip=settings.cloudmap_advertise_ip or settings.host,
        port=refresh_port,
        attributes=owned_attributes(settings.cloudmap_attributes, settings.pod_namespace),
        client=client,
        backoff_seconds=settings.bootstrap_backoff_seconds,
        backoff_max_seconds=settings.bootstrap_backoff_max_seconds,
    )
