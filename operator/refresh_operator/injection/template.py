"""The sidecar template: what the injected config-service container carries besides the pod's own asks.

The operator chart renders it (``injection.sidecar`` values, whose defaults are the config-service chart's:
security context, resources, probe timings, ports, cache TTL) into a ConfigMap, mounted into the operator
as one JSON file (``CONFIG_REFRESH_INJECTION_TEMPLATE_FILE``). Every key is optional except the image.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast


class TemplateError(ValueError):
    """The template file is missing a key or has a malformed one; the message names it."""


def _default_security_context() -> dict[str, Any]:
    # The config-service chart's `securityContext` default.
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _default_resources() -> dict[str, Any]:
    # The config-service chart's `resources` default.
    return {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}


@dataclasses.dataclass(frozen=True)
class SidecarTemplate:
    image: str
    image_pull_policy: str = "IfNotPresent"
    container_name: str = "config-service"
    native_sidecar: bool = True
    """Inject as a Kubernetes native sidecar (an init container with restartPolicy Always, 1.29+): it
    starts, and its startup probe passes (every prefix loaded), before the app's containers start."""
    security_context: Mapping[str, Any] = dataclasses.field(default_factory=_default_security_context)
    resources: Mapping[str, Any] = dataclasses.field(default_factory=_default_resources)
    readiness_probe: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"periodSeconds": 5, "timeoutSeconds": 3}
    )
    """Timings only; the action (gRPC health on the health port) is the builder's."""
    liveness_probe: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"initialDelaySeconds": 10, "periodSeconds": 20, "timeoutSeconds": 5}
    )
    startup_probe: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 120}
    )
    config_port: int = 50052
    metrics_port: int = 9102
    health_port: int = 50053
    http_port: int = 2773
    files_dir: str = "/config-refresh/files"
    secure_files_dir: str = "/config-refresh/secure"
    files_size_limit: str = "64Mi"
    secure_size_limit: str = "16Mi"
    aws_region: str = "us-east-1"
    aws_endpoint_url: str = ""
    ttl_seconds: int = 600
    grace_seconds: int = 20
    log_level: str = "INFO"
    refresh_allowed_users: tuple[str, ...] = ()
    """Usernames allowed to call RefreshService on routes with auth.type serviceAccountToken: the
    operator's ServiceAccount (``system:serviceaccount:<namespace>:<name>``)."""
    extra_env: tuple[Mapping[str, Any], ...] = ()


_KEYS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "image": ("image", str),
    "imagePullPolicy": ("image_pull_policy", str),
    "containerName": ("container_name", str),
    "nativeSidecar": ("native_sidecar", bool),
    "securityContext": ("security_context", dict),
    "resources": ("resources", dict),
    "readinessProbe": ("readiness_probe", dict),
    "livenessProbe": ("liveness_probe", dict),
    "startupProbe": ("startup_probe", dict),
    "configPort": ("config_port", int),
    "metricsPort": ("metrics_port", int),
    "healthPort": ("health_port", int),
    "httpPort": ("http_port", int),
    "filesDir": ("files_dir", str),
    "secureFilesDir": ("secure_files_dir", str),
    "filesSizeLimit": ("files_size_limit", str),
    "secureSizeLimit": ("secure_size_limit", str),
    "awsRegion": ("aws_region", str),
    "awsEndpointUrl": ("aws_endpoint_url", str),
    "ttlSeconds": ("ttl_seconds", int),
    "graceSeconds": ("grace_seconds", int),
    "logLevel": ("log_level", str),
    "refreshAllowedUsers": ("refresh_allowed_users", list),
    "extraEnv": ("extra_env", list),
}


def template_from_mapping(raw: Mapping[str, Any]) -> SidecarTemplate:
    """Validate the chart's JSON (camelCase keys) into a SidecarTemplate; unknown keys are refused."""
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise TemplateError(f"unknown sidecar template keys {unknown}; known: {sorted(_KEYS)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        field, kind = _KEYS[key]
        if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
            raise TemplateError(f"sidecar template key {key!r} must be {getattr(kind, '__name__', kind)}")
        if key in ("refreshAllowedUsers", "extraEnv"):
            value = tuple(cast(list[Any], value))
        values[field] = value
    if not values.get("image"):
        raise TemplateError("sidecar template key 'image' is required (operator chart: injection.image)")
    for key in ("configPort", "metricsPort", "healthPort", "httpPort"):
        port = values.get(_KEYS[key][0])
        if port is not None and not 1 <= port <= 65535:
            raise TemplateError(f"sidecar template key {key!r} must be a port number, got {port}")
    return SidecarTemplate(**values)


def load_template(path: Path) -> SidecarTemplate:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise TemplateError(f"cannot read the sidecar template {path}: {error}") from None
    if not isinstance(raw, dict):
        raise TemplateError(f"the sidecar template {path} must be a JSON object")
    return template_from_mapping(raw)
