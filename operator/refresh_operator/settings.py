"""The operator's one typed settings object (core and podSync), built once at start from the environment.

Everything tunable lives here, declared once as a field of `OperatorSettings` (type, default, bounds, doc),
so the chart has exactly one list of environment variables to set (`CONFIG_REFRESH_<FIELD>`, plus the AWS
SDK's own `AWS_REGION`/`AWS_ENDPOINT_URL` and the downward API's `POD_ID`), and a misconfigured deployment
fails at start with the offending key named instead of at the first change event. This is the only module
of the operator that reads the environment.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, FilePath, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from config_service.envsource import EnvSettings, environment, first_problem

ENV_PREFIX = "CONFIG_REFRESH_"

HttpUrl = Annotated[str, Field(pattern=r"^https?://")]
CommaList = Annotated[tuple[str, ...], NoDecode]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the key."""


class OperatorSettings(EnvSettings):
    """Settings of one operator process (see docs/operator.md for the table)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, validate_by_name=True, extra="ignore"
    )

    queue_url: HttpUrl = Field(description="the SQS queue the change events arrive on")
    region: str = Field(
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="the region of the queue, Parameter Store and Cloud Map (or AWS_DEFAULT_REGION)",
    )
    aws_endpoint_url: HttpUrl | None = Field(
        None, validation_alias=AliasChoices(f"{ENV_PREFIX}AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL")
    )
    aws_retry_mode: Literal["standard", "adaptive"] = "standard"
    aws_max_attempts: int = Field(5, ge=1, le=20)
    max_messages: int = Field(10, ge=1, le=10)
    wait_time_seconds: int = Field(20, ge=0, le=20)
    visibility_extension_seconds: int = Field(30, ge=5, le=43200)
    max_inflight_messages: int = Field(32, ge=1, le=1000)
    max_held_messages: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Backpressure: the receive loop pauses while this many messages are held (received, "
        "not yet deleted or left on the queue); the rest wait in SQS.",
    )
    coalesce_hold_seconds: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="How long a key's run waits for the fan-out it started before a newer change of the "
        "key may start another (which supersedes it if it is still running).",
    )
    executor_threads: int = Field(16, ge=2, le=256)
    metrics_port: int = Field(9090, ge=0, le=65535)
    metrics_address: str = "0.0.0.0"
    retention_seconds: int = Field(7 * 24 * 3600, ge=0, le=10**9)
    retention_keep: int = Field(10, ge=1, le=10**6)
    retention_interval_seconds: int = Field(300, ge=1, le=86400)
    peering_lifetime_seconds: int = Field(
        60,
        ge=10,
        le=3600,
        description="kopf peering: how long this replica counts as alive after its last keep-alive; a "
        "standby takes over at most this long after the active replica died without a clean stop.",
    )
    resync_grace_seconds: int = Field(10, ge=0, le=3600)
    status_patch_interval_seconds: float = Field(1.0, ge=0.1)
    channel_idle_seconds: float = Field(
        600.0,
        ge=1.0,
        le=86400.0,
        description="how long a gRPC channel to an instance may stay unused before it is closed (the "
        "fan-out's pool sweeps it, and gRPC drops its connection: grpc.client_idle_timeout_ms)",
    )
    max_channels: int = Field(
        2000,
        ge=0,
        le=1_000_000,
        description="most gRPC channels (one per instance) kept warm; opening one more closes the least "
        "recently used, after its running calls (0: no bound). About 40 KiB each.",
    )
    instances_cap: int = Field(200, ge=1, le=5000)
    tls_ca_file: FilePath | None = None
    tls_cert_file: FilePath | None = None
    tls_key_file: FilePath | None = None
    token_file: FilePath | None = None
    service_account_name: str | None = Field(
        None,
        description="The operator's own ServiceAccount: TokenRequest mints its per-audience tokens for "
        "`auth.type: serviceAccountToken` routes (the chart sets it; RBAC allows only this name).",
    )
    service_account_namespace: str | None = None
    token_expiration_seconds: int = Field(3600, ge=600, le=86400)
    pod_sync: bool = True
    podsync_interval_seconds: float = Field(
        60.0, gt=0, le=86400, description="podSync: how often each route's Cloud Map service is re-listed."
    )
    routing_unrestricted: bool = Field(
        False,
        description="Single-tenant clusters only: any namespace may route any prefix and target any "
        "instance.",
    )
    allowed_prefixes: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(
        default_factory=dict,
        description="Kubernetes namespace ('*': every namespace) → the parameter prefixes its routes may "
        "claim (a JSON object).",
    )
    shared_services: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(),
        description="Cloud Map services ('<namespace>/<service>') whose instances every namespace's routes "
        "may target.",
    )
    health_gate_hosts: CommaList = ("*.svc", "*.svc.cluster.local")
    health_gate_allow_loopback: bool = False
    pod_id: str = Field(
        default_factory=socket.gethostname,
        validation_alias="POD_ID",
        description="This replica's name in logs (the chart sets it from the downward API).",
    )
    injection_enabled: bool = Field(
        False, description="Serve the sidecar injection webhook (docs/any-language.md#injection)."
    )
    injection_address: str = Field(
        "0.0.0.0", description="Where the injection webhook's HTTPS server listens."
    )
    injection_port: int = Field(9443, ge=1, le=65535)
    injection_cert_file: FilePath | None = Field(
        None,
        description="The webhook's serving certificate (PEM) the API server checks against the webhook "
        "configuration's caBundle; re-read when it changes.",
    )
    injection_key_file: FilePath | None = None
    injection_template_file: FilePath | None = Field(
        None, description="The sidecar template (JSON) the operator chart renders from injection.sidecar.*."
    )

    @field_validator("queue_url", "region", "aws_endpoint_url", "metrics_address", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() or None if isinstance(value, str) else value

    @field_validator("health_gate_hosts", "shared_services", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("allowed_prefixes", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"must be a JSON object, got {value[:80]!r}: {error.msg}") from None

    @field_validator("allowed_prefixes")
    @classmethod
    def _absolute_prefixes(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for namespace, prefixes in value.items():
            for prefix in prefixes:
                if not prefix.startswith("/") or prefix == "/":
                    raise ValueError(
                        f"prefix {prefix!r} of {namespace!r} must start with '/' and not be just '/' "
                        "(use routing.unrestricted for a single-tenant cluster)"
                    )
        return value

    @field_validator("shared_services")
    @classmethod
    def _service_names(cls, value: frozenset[str]) -> frozenset[str]:
        for service in value:
            if service.count("/") != 1 or service.startswith("/") or service.endswith("/"):
                raise ValueError(f"{service!r} must be '<cloud map namespace>/<service>'")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> OperatorSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise SettingsError(
                f"{ENV_PREFIX}TLS_CERT_FILE and {ENV_PREFIX}TLS_KEY_FILE must be set together"
            )
        if self.injection_enabled:
            for name in ("injection_cert_file", "injection_key_file", "injection_template_file"):
                if getattr(self, name) is None:
                    raise SettingsError(
                        f"{ENV_PREFIX}{name.upper()} is required when {ENV_PREFIX}INJECTION_ENABLED is true"
                    )
        if self.service_account_name is not None and self.service_account_namespace is None:
            raise SettingsError(
                f"{ENV_PREFIX}SERVICE_ACCOUNT_NAMESPACE is required with {ENV_PREFIX}SERVICE_ACCOUNT_NAME"
            )
        return self


def env_key(name: str) -> str:
    """The environment variable a field (or alias) of `OperatorSettings` is read from."""
    field = OperatorSettings.model_fields.get(name)
    if field is None or field.validation_alias is not None:
        return name  # already the variable itself (an alias such as AWS_REGION)
    return ENV_PREFIX + name.upper()


def load_settings(env: Mapping[str, str] | None = None) -> OperatorSettings:
    """Build the settings from the environment (or `env`), raising SettingsError naming the first bad key."""
    try:
        with environment(env):
            return OperatorSettings()
    except ValidationError as error:
        raise SettingsError(first_problem(error, env_key)) from None
