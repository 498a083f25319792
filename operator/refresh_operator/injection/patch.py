"""The pure part of injection: pod annotations + the named ConfigRoute + the sidecar template -> the pod
with config-service injected. No API calls, no settings reads: the webhook handler (``webhook.py``) looks
the route up and hands the result to kopf, which diffs it into the admission response's JSONPatch.

A pod asks with the annotation ``configrefresh.io/inject: <ConfigRoute name>`` and
``configrefresh.io/prefixes: /a/,/b/`` (see ``ANNOTATIONS`` and docs/any-language.md). A pod without
the inject annotation is never changed. A pod that asks but cannot be served (route missing, the route's
podSync does not select the pod, a port clash, a prefix the route does not deliver) is refused with a
message naming the fix: injecting a sidecar that would never receive a refresh is worse than an error.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from configrefresh_api.labels import default_audience
from refresh_operator.injection.template import SidecarTemplate
from refresh_operator.podsync.model import InvalidPodSync, route_sync_from_body, selects

DOMAIN = "configrefresh.io"
INJECT = f"{DOMAIN}/inject"
"""Annotation: the ConfigRoute (same namespace) whose changes the sidecar receives. Also the name of
the pod label (value ``enabled``) the MutatingWebhookConfiguration's objectSelector matches."""
PREFIXES = f"{DOMAIN}/prefixes"
HTTP_PORT = f"{DOMAIN}/http-port"
HTTP_SECURE_STRINGS = f"{DOMAIN}/http-secure-strings"
FILES_DIR = f"{DOMAIN}/files-dir"
SECURE_FILES_DIR = f"{DOMAIN}/secure-files-dir"
RELOAD_URL = f"{DOMAIN}/reload-url"
RELOAD_SIGNAL = f"{DOMAIN}/reload-signal"
RELOAD_PROCESS = f"{DOMAIN}/reload-process"
TLS_SECRET = f"{DOMAIN}/tls-secret"
INJECTED = f"{DOMAIN}/injected"
"""Annotation the webhook sets on a pod it changed: the route name (a second admission is a no-op)."""

ANNOTATIONS: dict[str, str] = {
    INJECT: "required: the ConfigRoute (same namespace) whose spec.podSync selects this pod",
    PREFIXES: "required: comma-separated Parameter Store prefixes the sidecar loads, each under the "
    "route's parameterPrefix",
    HTTP_PORT: "port of the local HTTP API on 127.0.0.1 (default: the template's httpPort, 2773)",
    HTTP_SECURE_STRINGS: '"true": also serve SecureString values on the local HTTP API',
    FILES_DIR: "mount path of the files volume in every container (default /config-refresh/files)",
    SECURE_FILES_DIR: "mount path of the memory-backed SecureString volume (default /config-refresh/secure)",
    RELOAD_URL: "http://127.0.0.1:<port>/<path> the sidecar POSTs to after a change is applied",
    RELOAD_SIGNAL: "signal (e.g. SIGHUP) sent after a change; needs reload-process; shares the pod's "
    "process namespace",
    RELOAD_PROCESS: "name of the app's process that receives reload-signal",
    TLS_SECRET: "Secret (tls.crt, tls.key) the refresh port serves; required when the route has "
    "refresh.tls.enabled",
}

FILES_VOLUME = "config-refresh-files"
SECURE_VOLUME = "config-refresh-secure"
TMP_VOLUME = "config-refresh-tmp"
TLS_VOLUME = "config-refresh-tls"
TLS_MOUNT = "/etc/config-service/tls"


class InjectionRefused(ValueError):
    """The pod asked for injection but cannot get a working sidecar; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class InjectionRequest:
    """What a pod's annotations ask for."""

    route: str
    prefixes: tuple[str, ...]
    http_port: int | None = None
    http_secure_strings: bool = False
    files_dir: str | None = None
    secure_files_dir: str | None = None
    reload_url: str | None = None
    reload_signal: str | None = None
    reload_process: str | None = None
    tls_secret: str | None = None


def _annotation(annotations: Mapping[str, str], key: str) -> str | None:
    value = annotations.get(key)
    if value is None or not str(value).strip():
        return None
    return str(value).strip()


def _port(annotations: Mapping[str, str], key: str) -> int | None:
    raw = _annotation(annotations, key)
    if raw is None:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise InjectionRefused(f"annotation {key} must be a port number 1-65535, got {raw!r}")
    return int(raw)


def _absolute_dir(annotations: Mapping[str, str], key: str) -> str | None:
    raw = _annotation(annotations, key)
    if raw is not None and (not raw.startswith("/") or raw.rstrip("/") == "" or ".." in raw.split("/")):
        raise InjectionRefused(f"annotation {key} must be an absolute directory path, got {raw!r}")
    return raw.rstrip("/") if raw is not None else None


def request_from_pod(pod: Mapping[str, Any]) -> InjectionRequest | None:
    """The injection a pod asks for, or None if it has no ``configrefresh.io/inject`` annotation."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    route = _annotation(annotations, INJECT)
    if route is None:
        return None
    raw_prefixes = _annotation(annotations, PREFIXES)
    if raw_prefixes is None:
        raise InjectionRefused(f"annotation {PREFIXES} is required with {INJECT}, e.g. '/orders/'")
    prefixes = tuple(p.strip() for p in raw_prefixes.split(",") if p.strip())
    for prefix in prefixes:
        if not prefix.startswith("/") or prefix == "/":
            raise InjectionRefused(f"annotation {PREFIXES}: {prefix!r} must start with '/' and not be '/'")
    signal = _annotation(annotations, RELOAD_SIGNAL)
    process = _annotation(annotations, RELOAD_PROCESS)
    if (signal is None) != (process is None):
        raise InjectionRefused(f"annotations {RELOAD_SIGNAL} and {RELOAD_PROCESS} go together")
    return InjectionRequest(
        route=route,
        prefixes=prefixes,
        http_port=_port(annotations, HTTP_PORT),
        http_secure_strings=(_annotation(annotations, HTTP_SECURE_STRINGS) or "").lower() == "true",
        files_dir=_absolute_dir(annotations, FILES_DIR),
        secure_files_dir=_absolute_dir(annotations, SECURE_FILES_DIR),
        reload_url=_annotation(annotations, RELOAD_URL),
        reload_signal=signal,
        reload_process=process,
        tls_secret=_annotation(annotations, TLS_SECRET),
    )


def _env(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _refresh_auth_env(
    request: InjectionRequest, route: Mapping[str, Any], template: SidecarTemplate
) -> list[dict[str, Any]]:
    """How the sidecar's RefreshService authenticates the operator, from the route's refresh spec."""
    refresh = (route.get("spec") or {}).get("refresh") or {}
    tls = bool((refresh.get("tls") or {}).get("enabled", False))
    auth = refresh.get("auth") or {}
    auth_type = str(auth.get("type", "none"))
    payload = str(refresh.get("payload", "value"))
    env: list[dict[str, Any]] = []
    if tls:
        if request.tls_secret is None:
            raise InjectionRefused(
                f"ConfigRoute {request.route} has refresh.tls.enabled: annotate the pod with {TLS_SECRET} "
                "naming a Secret (tls.crt, tls.key) whose certificate carries the route's "
                "refresh.tls.serverName and is signed by its caBundle"
            )
        # The refresh port only: ConfigService and the HTTP API stay plaintext on 127.0.0.1 (in the pod).
        env.append(_env("CONFIG_SERVICE_REFRESH_TLS_CERT_FILE", f"{TLS_MOUNT}/tls.crt"))
        env.append(_env("CONFIG_SERVICE_REFRESH_TLS_KEY_FILE", f"{TLS_MOUNT}/tls.key"))
    if auth_type == "serviceAccountToken":
        if not tls:
            raise InjectionRefused(
                f"ConfigRoute {request.route} sends ServiceAccount tokens without TLS; the injected sidecar "
                "accepts tokens over TLS only (enable refresh.tls and set the tls-secret annotation, or "
                "use auth.type none with payload invalidate)"
            )
        if not template.refresh_allowed_users:
            raise InjectionRefused(
                "the sidecar template lists no refreshAllowedUsers (operator chart: "
                "injection.sidecar.refreshAllowedUsers); the sidecar could not accept the operator's token"
            )
        cloud_map = ((route.get("spec") or {}).get("discovery") or {}).get("cloudMap") or {}
        audience = auth.get("audience") or default_audience(
            str(cloud_map.get("namespace", "")), str(cloud_map.get("service", ""))
        )
        env.append(_env("CONFIG_SERVICE_TOKENREVIEW_AUDIENCE", audience))
        env.append(_env("CONFIG_SERVICE_TOKENREVIEW_ALLOWED_USERS", ",".join(template.refresh_allowed_users)))
    elif auth_type == "none":
        env.append(_env("CONFIG_SERVICE_INSECURE_REFRESH", "true"))
    else:
        raise InjectionRefused(
            f"ConfigRoute {request.route} uses refresh.auth.type {auth_type}, which injection does not "
            "configure (serviceAccountToken or none); deploy the config-service chart instead"
        )
    if payload == "invalidate" or not tls:
        # Without TLS, or when the route sends invalidations only, never accept a pushed value.
        env.append(_env("CONFIG_SERVICE_REFRESH_ACCEPT_VALUES", "false"))
    return env


def _used_ports(pod_spec: Mapping[str, Any]) -> dict[int, str]:
    used: dict[int, str] = {}
    for container in [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]:
        for port in container.get("ports") or []:
            if isinstance(port.get("containerPort"), int):
                used[port["containerPort"]] = str(container.get("name", "?"))
    return used


def build_sidecar(
    pod: Mapping[str, Any],
    request: InjectionRequest,
    route: Mapping[str, Any] | None,
    template: SidecarTemplate,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sidecar container and the volumes it needs, or InjectionRefused.

    ``route`` is the ConfigRoute named by the annotation (None: not found in the pod's namespace).
    """
    meta = pod.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    if route is None:
        raise InjectionRefused(
            f"ConfigRoute {request.route} not found in namespace {namespace} (among the routes the operator "
            "watches): create it first, with spec.podSync selecting this pod"
        )
    try:
        sync = route_sync_from_body(route)
    except InvalidPodSync as error:
        raise InjectionRefused(f"ConfigRoute {request.route}: {error}") from None
    if sync is None:
        raise InjectionRefused(
            f"ConfigRoute {request.route} has no spec.podSync: the sidecar would never be registered in "
            "Cloud Map nor receive a refresh; add spec.podSync with a selector matching this pod's labels"
        )
    if not selects(sync, {"metadata": {"namespace": namespace, "labels": meta.get("labels") or {}}}):
        raise InjectionRefused(
            f"ConfigRoute {request.route}'s spec.podSync.selector.matchLabels {sync.match_labels} does not "
            "select this pod: podSync would never register it; label the pod to match"
        )
    route_prefix = str((route.get("spec") or {}).get("parameterPrefix") or "")
    outside = [p for p in request.prefixes if not p.startswith(route_prefix)]
    if outside:
        raise InjectionRefused(
            f"prefixes {outside} are not under ConfigRoute {request.route}'s parameterPrefix "
            f"{route_prefix!r}: their changes would never be pushed"
        )
    http_port = request.http_port or template.http_port
    ports = {
        "refresh": sync.port,
        "config": template.config_port,
        "metrics": template.metrics_port,
        "health": template.health_port,
        "http": http_port,
    }
    if len(set(ports.values())) != len(ports):
        raise InjectionRefused(f"the sidecar's ports clash with each other: {ports}")
    used = _used_ports(pod.get("spec") or {})
    clashes = {name: port for name, port in ports.items() if port in used}
    if clashes:
        raise InjectionRefused(
            f"the sidecar's ports {clashes} are already container ports of "
            f"{sorted({used[p] for p in clashes.values()})} "
            f"(change the route's podSync.port or the {HTTP_PORT} annotation)"
        )
    files_dir = request.files_dir or template.files_dir
    secure_dir = request.secure_files_dir or template.secure_files_dir
    if (
        files_dir == secure_dir
        or files_dir.startswith(secure_dir + "/")
        or secure_dir.startswith(files_dir + "/")
    ):
        raise InjectionRefused(
            f"the files dir {files_dir} and the SecureString dir {secure_dir} must not nest"
        )
    env = [
        _field_env("CONFIG_SERVICE_INSTANCE_ID", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _env("CONFIG_SERVICE_HOST", "0.0.0.0"),  # the refresh port: the operator calls it over the network
        _env("CONFIG_SERVICE_REFRESH_PORT", sync.port),
        _env("CONFIG_SERVICE_CONFIG_HOST", "127.0.0.1"),  # gRPC reads: containers of this pod only
        _env("CONFIG_SERVICE_CONFIG_PORT", template.config_port),
        _env("CONFIG_SERVICE_METRICS_PORT", template.metrics_port),
        _env("CONFIG_SERVICE_HEALTH_PORT", template.health_port),
        _env("CONFIG_SERVICE_PREFIXES", ",".join(request.prefixes)),
        _env("CONFIG_SERVICE_AWS_REGION", template.aws_region),
        _env("CONFIG_SERVICE_TTL_SECONDS", template.ttl_seconds),
        _env("CONFIG_SERVICE_GRACE_SECONDS", template.grace_seconds),
        _env("CONFIG_SERVICE_LOG_LEVEL", template.log_level),
        _env("CONFIG_SERVICE_LOCAL_HTTP_HOST", "127.0.0.1"),
        _env("CONFIG_SERVICE_LOCAL_HTTP_PORT", http_port),
        _env("CONFIG_SERVICE_LOCAL_FILES_DIR", files_dir),
        _env("CONFIG_SERVICE_LOCAL_FILES_SECURE_DIR", secure_dir),
    ]
    if template.aws_endpoint_url:
        env.append(_env("CONFIG_SERVICE_AWS_ENDPOINT_URL", template.aws_endpoint_url))
    if request.http_secure_strings:
        env.append(_env("CONFIG_SERVICE_LOCAL_HTTP_SECURE_STRINGS", "true"))
    if request.reload_url is not None:
        env.append(_env("CONFIG_SERVICE_LOCAL_RELOAD_URL", request.reload_url))
    if request.reload_signal is not None and request.reload_process is not None:
        env.append(_env("CONFIG_SERVICE_LOCAL_RELOAD_SIGNAL", request.reload_signal))
        env.append(_env("CONFIG_SERVICE_LOCAL_RELOAD_PROCESS_NAME", request.reload_process))
    env.extend(_refresh_auth_env(request, route, template))
    env.extend(copy.deepcopy(dict(item)) for item in template.extra_env)
    mounts: list[dict[str, Any]] = [
        {"name": TMP_VOLUME, "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir)
        {"name": FILES_VOLUME, "mountPath": files_dir},
        {"name": SECURE_VOLUME, "mountPath": secure_dir},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": FILES_VOLUME, "emptyDir": {"sizeLimit": template.files_size_limit}},
        {"name": SECURE_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": template.secure_size_limit}},
    ]
    if request.tls_secret is not None and any(e["name"].endswith("_TLS_CERT_FILE") for e in env):
        mounts.append({"name": TLS_VOLUME, "mountPath": TLS_MOUNT, "readOnly": True})
        volumes.append(
            {"name": TLS_VOLUME, "secret": {"secretName": request.tls_secret, "defaultMode": 0o440}}
        )
    grpc_health = {"grpc": {"port": template.health_port}}
    container: dict[str, Any] = {
        "name": template.container_name,
        "image": template.image,
        "imagePullPolicy": template.image_pull_policy,
        "env": env,
        "ports": [
            {"name": "cr-refresh", "containerPort": sync.port, "protocol": "TCP"},
            {"name": "cr-metrics", "containerPort": template.metrics_port, "protocol": "TCP"},
            {"name": "cr-health", "containerPort": template.health_port, "protocol": "TCP"},
        ],
        # grpc.health.v1 on the plaintext health port: NOT_SERVING until every prefix is loaded.
        "startupProbe": {**grpc_health, **dict(template.startup_probe)},
        "readinessProbe": {**grpc_health, **dict(template.readiness_probe)},
        "livenessProbe": {"tcpSocket": {"port": template.health_port}, **dict(template.liveness_probe)},
        "resources": copy.deepcopy(dict(template.resources)),
        "securityContext": copy.deepcopy(dict(template.security_context)),
        "volumeMounts": mounts,
    }
    if template.native_sidecar:
        container["restartPolicy"] = "Always"
    return container, volumes


def _app_mounts(container: Mapping[str, Any], files_dir: str, secure_dir: str) -> list[dict[str, Any]]:
    mounts = [dict(m) for m in container.get("volumeMounts") or []]
    taken = {m.get("mountPath") for m in mounts}
    for name, path in ((FILES_VOLUME, files_dir), (SECURE_VOLUME, secure_dir)):
        if path not in taken:
            mounts.append({"name": name, "mountPath": path, "readOnly": True})
    return mounts


def inject(
    pod: Mapping[str, Any], route: Mapping[str, Any] | None, template: SidecarTemplate
) -> dict[str, Any] | None:
    """The pod with the sidecar injected, or None when it is left as it is (no annotation, or already
    injected). Raises InjectionRefused when the pod asks but cannot be served. ``pod`` is not changed."""
    request = request_from_pod(pod)
    if request is None:
        return None
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    spec = pod.get("spec") or {}
    names = {c.get("name") for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]}
    if INJECTED in annotations or template.container_name in names:
        return None
    sidecar, volumes = build_sidecar(pod, request, route, template)
    existing_volumes = {v.get("name") for v in spec.get("volumes") or []}
    clashing = sorted(existing_volumes & {v["name"] for v in volumes})
    if clashing:
        raise InjectionRefused(f"the pod already has volumes named {clashing}")
    files_dir = request.files_dir or template.files_dir
    secure_dir = request.secure_files_dir or template.secure_files_dir
    result = copy.deepcopy(dict(pod))
    new_spec = result.setdefault("spec", {})
    new_spec["containers"] = [
        {**c, "volumeMounts": _app_mounts(c, files_dir, secure_dir)} for c in new_spec.get("containers") or []
    ]
    if template.native_sidecar:
        new_spec["initContainers"] = [sidecar, *(new_spec.get("initContainers") or [])]
    else:
        new_spec["containers"] = [*new_spec["containers"], sidecar]
    new_spec["volumes"] = [*(new_spec.get("volumes") or []), *volumes]
    if request.reload_signal is not None:
        new_spec["shareProcessNamespace"] = True
    result.setdefault("metadata", {}).setdefault("annotations", {})[INJECTED] = request.route
    return result


def apply_in_place(body: dict[str, Any], injected: Mapping[str, Any]) -> None:
    """Make ``body`` equal ``injected`` (for kopf's patch.fns, which diffs the body into a JSONPatch)."""
    for key in list(body):
        if key not in injected:
            del body[key]
    body.update(copy.deepcopy(dict(injected)))
