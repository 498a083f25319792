"""Fake AWS clients: boto3's SQS and SSM clients (as the operator calls them), podSync's Cloud Map client."""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from refresh_operator.cloudmap import CloudMapError, InstanceNotFound, ServiceRef
from refresh_operator.podsync.reconcile import ActualInstance

SSM_MODIFIED = datetime.datetime(2026, 11, 26, 10, 0, 0, 250000, tzinfo=datetime.UTC)
"""LastModifiedDate of FakeSsm's default parameter."""


class FakeSqs:
    """Records DeleteMessage and ChangeMessageVisibility calls."""

    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.visibility: list[tuple[str, int]] = []

    def delete_message(self, **kwargs: Any) -> None:
        self.deleted.append(kwargs["ReceiptHandle"])

    def change_message_visibility(self, **kwargs: Any) -> None:
        self.visibility.append((kwargs["ReceiptHandle"], kwargs["VisibilityTimeout"]))


class FakeSsm:
    """boto3's SSM client holding one parameter (answered under whatever name is asked for).

    `parameter` None: GetParameter fails with `error` (ParameterNotFound by default). The default parameter
    is a SecureString at version 3. Each read takes `delay` seconds (a thread is blocked) and, with `bump`,
    sees a newer version than the one before, as during a burst of writes. `calls` holds every request.
    """

    def __init__(
        self,
        parameter: dict[str, Any] | None = None,
        *,
        version: int | None = 3,
        error: str = "ParameterNotFound",
        delay: float = 0.0,
        bump: bool = False,
    ) -> None:
        if parameter is None and version is not None:
            parameter = {"Version": version, "LastModifiedDate": SSM_MODIFIED, "Type": "SecureString"}
            parameter["Value"] = "s3cr3t"
        self.parameter = parameter
        self._last = dict(parameter or {"LastModifiedDate": SSM_MODIFIED, "Type": "SecureString"})
        self.error = error
        self.delay = delay
        self.bump = bump
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def reads(self) -> int:
        return len(self.calls)

    @property
    def version(self) -> int | None:
        """The parameter's version; None when it does not exist (setting None deletes it)."""
        return None if self.parameter is None else int(self.parameter["Version"])

    @version.setter
    def version(self, version: int | None) -> None:
        if version is None:
            self.parameter = None
        else:
            self.parameter = {**(self.parameter or self._last), "Version": version}
            self._last = dict(self.parameter)

    def get_parameter(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append(kwargs)
        time.sleep(self.delay)
        with self._lock:
            if self.bump and self.version is not None:
                self.version += 1
            parameter = self.parameter
        if parameter is None:
            raise ClientError({"Error": {"Code": self.error, "Message": "x"}}, "GetParameter")
        return {"Parameter": {**parameter, "Name": kwargs["Name"]}}


class FakeCloudMap:
    """podSync's Cloud Map client over one service's instances in memory; `calls` in order."""

    def __init__(self, service: ServiceRef) -> None:
        self.service = service
        self.instances: dict[str, ActualInstance] = {}
        self.missing_service = False
        self.calls: list[str] = []

    async def resolve_service(self, namespace_name: str, service_name: str) -> ServiceRef:
        if self.missing_service:
            raise CloudMapError("ServiceNotFound", f'Cloud Map service "{service_name}" does not exist')
        return self.service

    async def list_instances(self, service_id: str) -> dict[str, ActualInstance]:
        return dict(self.instances)

    async def register(
        self,
        service_id: str,
        instance_id: str,
        attributes: Mapping[str, str],
        *,
        healthy: bool,
        replace: bool = False,
    ) -> None:
        self.calls.append(f"register {instance_id}")
        self.instances[instance_id] = ActualInstance(instance_id, dict(attributes), healthy)

    async def set_health(self, service_id: str, instance_id: str, healthy: bool) -> None:
        self.calls.append(f"health {instance_id} {healthy}")
        if instance_id not in self.instances:
            raise InstanceNotFound("InstanceNotFound", instance_id)
        self.instances[instance_id] = dataclasses.replace(self.instances[instance_id], healthy=healthy)

    async def deregister(self, service_id: str, instance_id: str) -> None:
        self.calls.append(f"deregister {instance_id}")
        self.instances.pop(instance_id, None)


def client_error(code: str, **extra: Any) -> ClientError:
    """A botocore ClientError with `code` (and extra response keys, e.g. ResponseMetadata)."""
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}, **extra}, "Op")


class ScriptedClient:
    """A boto3 client stand-in: answers each API from a queue of results or errors (the last answer
    repeats) and records each call."""

    def __init__(self, **script: list[Any]) -> None:
        self.script = script
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, api: str) -> Any:
        def call(**params: Any) -> Any:
            self.calls.append((api, params))
            answers = self.script.get(api)
            if not answers:
                raise AssertionError(f"unexpected call {api}")
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]
