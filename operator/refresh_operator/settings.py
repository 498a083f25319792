"""The operator's one typed settings object, built once at start from flags and the environment.

Everything tunable lives here so the chart has exactly one list of environment variables to set, and a
misconfigured deployment fails at start with the offending key named instead of at the first change event.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

ENV_PREFIX = "CONFIG_REFRESH_"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the key."""


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    """Settings of one operator process (see docs/operator.md for the table)."""

    queue_url: str
    region: str
    aws_endpoint_url: str | None = None
    aws_retry_mode: str = "standard"
    aws_max_attempts: int = 5
    max_messages: int = 10
    wait_time_seconds: int = 20
    visibility_extension_seconds: int = 30
    max_inflight_messages: int = 32
    executor_threads: int = 16
    metrics_port: int = 9090
    metrics_address: str = "0.0.0.0"
    retention_seconds: int = 7 * 24 * 3600
    retention_keep: int = 10
    retention_interval_seconds: int = 300
    resync_grace_seconds: int = 10
    status_patch_interval_seconds: float = 1.0
    instances_cap: int = 200
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    token_file: Path | None = None
    service_account_name: str | None = None
    """The operator's own ServiceAccount: TokenRequest mints its per-audience tokens for
    `auth.type: serviceAccountToken` routes (the chart sets it; RBAC allows only this name)."""
    service_account_namespace: str | None = None
    token_expiration_seconds: int = 3600
    pod_sync: bool = True
    routing_unrestricted: bool = False
    """Single-tenant clusters only: any namespace may route any prefix and target any instance."""
    allowed_prefixes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Kubernetes namespace ("*": every namespace) → the parameter prefixes its routes may claim."""
    shared_services: frozenset[str] = frozenset()
    """Cloud Map services ("<namespace>/<service>") whose instances every namespace's routes may target."""
    health_gate_hosts: tuple[str, ...] = ("*.svc", "*.svc.cluster.local")
    health_gate_allow_loopback: bool = False


def _text(env: Mapping[str, str], key: str) -> str | None:
    value = env.get(key)
    if value is None or not value.strip():
        return None
    return value.strip()


def _int(env: Mapping[str, str], key: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = _text(env, key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{key} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], key: str, default: float, *, minimum: float) -> float:
    raw = _text(env, key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{key} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = _text(env, key)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{key} must be true or false, got {raw!r}")


def _file(env: Mapping[str, str], key: str) -> Path | None:
    raw = _text(env, key)
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_file():
        raise SettingsError(f"{key} points at {raw!r}, which is not a readable file")
    return path


def _list(env: Mapping[str, str], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(key)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _allowed_prefixes(env: Mapping[str, str], key: str) -> dict[str, tuple[str, ...]]:
    raw = _text(env, key)
    if raw is None:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as error:
        raise SettingsError(f"{key} must be a JSON object, got {raw[:80]!r}: {error.msg}") from None
    if not isinstance(parsed, dict):
        raise SettingsError(f"{key} must be a JSON object of namespace to a list of prefixes")
    result: dict[str, tuple[str, ...]] = {}
    for namespace, prefixes in parsed.items():
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise SettingsError(f"{key}: the prefixes of {namespace!r} must be a list of strings")
        for prefix in prefixes:
            if not prefix.startswith("/") or prefix == "/":
                raise SettingsError(
                    f"{key}: prefix {prefix!r} of {namespace!r} must start with '/' and not be just '/' "
                    "(use routing.unrestricted for a single-tenant cluster)"
                )
        result[str(namespace)] = tuple(prefixes)
    return result


def _shared_services(env: Mapping[str, str], key: str) -> frozenset[str]:
    services = _list(env, key, ())
    for service in services:
        if service.count("/") != 1 or service.startswith("/") or service.endswith("/"):
            raise SettingsError(f"{key}: {service!r} must be '<cloud map namespace>/<service>'")
    return frozenset(services)


def load_settings(env: Mapping[str, str] | None = None) -> OperatorSettings:
    """Build the settings from the environment, raising SettingsError naming the first bad key."""
    env = os.environ if env is None else env
    p = ENV_PREFIX
    queue_url = _text(env, f"{p}QUEUE_URL")
    if queue_url is None:
        raise SettingsError(f"{p}QUEUE_URL is required (the SQS queue the change events arrive on)")
    if not queue_url.startswith(("https://", "http://")):
        raise SettingsError(f"{p}QUEUE_URL must be an http(s) URL, got {queue_url!r}")
    region = _text(env, "AWS_REGION") or _text(env, "AWS_DEFAULT_REGION")
    if region is None:
        raise SettingsError("AWS_REGION is required (or AWS_DEFAULT_REGION)")
    retry_mode = _text(env, f"{p}AWS_RETRY_MODE") or "standard"
    if retry_mode not in ("standard", "adaptive"):
        raise SettingsError(f"{p}AWS_RETRY_MODE must be 'standard' or 'adaptive', got {retry_mode!r}")
    endpoint_key = f"{p}AWS_ENDPOINT_URL" if _text(env, f"{p}AWS_ENDPOINT_URL") else "AWS_ENDPOINT_URL"
    endpoint = _text(env, endpoint_key)
    if endpoint is not None and not endpoint.startswith(("https://", "http://")):
        raise SettingsError(f"{endpoint_key} must be an http(s) URL, got {endpoint!r}")
    cert_file = _file(env, f"{p}TLS_CERT_FILE")
    key_file = _file(env, f"{p}TLS_KEY_FILE")
    if (cert_file is None) != (key_file is None):
        raise SettingsError(f"{p}TLS_CERT_FILE and {p}TLS_KEY_FILE must be set together")
    sa_name = _text(env, f"{p}SERVICE_ACCOUNT_NAME")
    if sa_name is not None and _text(env, f"{p}SERVICE_ACCOUNT_NAMESPACE") is None:
        raise SettingsError(f"{p}SERVICE_ACCOUNT_NAMESPACE is required with {p}SERVICE_ACCOUNT_NAME")
    return OperatorSettings(
        queue_url=queue_url,
        region=region,
        aws_endpoint_url=endpoint,
        aws_retry_mode=retry_mode,
        aws_max_attempts=_int(env, f"{p}AWS_MAX_ATTEMPTS", 5, minimum=1, maximum=20),
        max_messages=_int(env, f"{p}MAX_MESSAGES", 10, minimum=1, maximum=10),
        wait_time_seconds=_int(env, f"{p}WAIT_TIME_SECONDS", 20, minimum=0, maximum=20),
        visibility_extension_seconds=_int(
            env, f"{p}VISIBILITY_EXTENSION_SECONDS", 30, minimum=5, maximum=43200
        ),
        max_inflight_messages=_int(env, f"{p}MAX_INFLIGHT_MESSAGES", 32, minimum=1, maximum=1000),
        executor_threads=_int(env, f"{p}EXECUTOR_THREADS", 16, minimum=2, maximum=256),
        metrics_port=_int(env, f"{p}METRICS_PORT", 9090, minimum=0, maximum=65535),
        metrics_address=_text(env, f"{p}METRICS_ADDRESS") or "0.0.0.0",
        retention_seconds=_int(env, f"{p}RETENTION_SECONDS", 7 * 24 * 3600, minimum=0, maximum=10**9),
        retention_keep=_int(env, f"{p}RETENTION_KEEP", 10, minimum=1, maximum=10**6),
        retention_interval_seconds=_int(env, f"{p}RETENTION_INTERVAL_SECONDS", 300, minimum=1, maximum=86400),
        resync_grace_seconds=_int(env, f"{p}RESYNC_GRACE_SECONDS", 10, minimum=0, maximum=3600),
        status_patch_interval_seconds=_float(env, f"{p}STATUS_PATCH_INTERVAL_SECONDS", 1.0, minimum=0.1),
        instances_cap=_int(env, f"{p}INSTANCES_CAP", 200, minimum=1, maximum=5000),
        tls_ca_file=_file(env, f"{p}TLS_CA_FILE"),
        tls_cert_file=cert_file,
        tls_key_file=key_file,
        token_file=_file(env, f"{p}TOKEN_FILE"),
        service_account_name=_text(env, f"{p}SERVICE_ACCOUNT_NAME"),
        service_account_namespace=_text(env, f"{p}SERVICE_ACCOUNT_NAMESPACE"),
        token_expiration_seconds=_int(env, f"{p}TOKEN_EXPIRATION_SECONDS", 3600, minimum=600, maximum=86400),
        pod_sync=_bool(env, f"{p}POD_SYNC", True),
        routing_unrestricted=_bool(env, f"{p}ROUTING_UNRESTRICTED", False),
        allowed_prefixes=_allowed_prefixes(env, f"{p}ALLOWED_PREFIXES"),
        shared_services=_shared_services(env, f"{p}SHARED_SERVICES"),
        health_gate_hosts=_list(env, f"{p}HEALTH_GATE_HOSTS", ("*.svc", "*.svc.cluster.local")),
        health_gate_allow_loopback=_bool(env, f"{p}HEALTH_GATE_ALLOW_LOOPBACK", False),
    )
