"""The injection patch builder (issue 21): pod + ConfigRoute + sidecar template -> the injected pod."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any, cast

import jsonpatch
import kopf
import pytest

from config_service.settings import Settings
from refresh_operator.injection.patch import (
    INJECTED,
    InjectionRefused,
    apply_in_place,
    inject,
    request_from_pod,
)
from refresh_operator.injection.template import (
    SidecarTemplate,
    TemplateError,
    load_template,
    template_from_mapping,
)
from refresh_operator.settings import SettingsError, load_settings

TEMPLATE = SidecarTemplate(image="registry.example/config-service:1.2.3")


def route(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"namespace": "apps", "name": "orders"},
        "spec": {
            "parameterPrefix": "/orders/",
            "discovery": {"cloudMap": {"namespace": "prod.internal", "service": "orders"}},
            "refresh": {"payload": "invalidate"},
            "podSync": {"selector": {"matchLabels": {"app": "orders"}}, "port": 50051},
        },
    }
    body["spec"].update(spec)
    return body


def pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": "apps",
            "generateName": "orders-",
            "labels": {"app": "orders", "configrefresh.io/inject": "enabled"},
            "annotations": {"configrefresh.io/inject": "orders", "configrefresh.io/prefixes": "/orders/"}
            if annotations is None
            else annotations,
        },
        "spec": {
            "containers": [{"name": "app", "image": "orders:1", "ports": [{"containerPort": 8080}]}],
            **spec,
        },
    }


def sidecar_of(injected: dict[str, Any]) -> dict[str, Any]:
    sidecars: list[dict[str, Any]] = [
        c for c in injected["spec"]["initContainers"] if c["name"] == "config-service"
    ]
    assert len(sidecars) == 1
    return sidecars[0]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<fieldRef>") for e in container["env"]}


def test_a_pod_without_the_annotation_is_left_alone() -> None:
    assert inject(pod(annotations={}), route(), TEMPLATE) is None
    assert inject(pod(annotations={"other": "x"}), None, TEMPLATE) is None
    assert request_from_pod({"metadata": {}}) is None


def test_the_sidecar_carries_the_template_and_the_routes_port() -> None:
    original = pod()
    kept = copy.deepcopy(original)
    injected = inject(original, route(), TEMPLATE)
    assert injected is not None
    assert original == kept  # pure: the input is not changed
    sidecar = sidecar_of(injected)
    assert sidecar["image"] == TEMPLATE.image
    assert sidecar["restartPolicy"] == "Always"  # native sidecar: up before the app starts
    assert sidecar["securityContext"] == TEMPLATE.security_context
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["resources"] == TEMPLATE.resources
    assert sidecar["startupProbe"]["grpc"] == {"port": TEMPLATE.health_port}
    assert sidecar["readinessProbe"] == {"grpc": {"port": 50053}, "periodSeconds": 5, "timeoutSeconds": 3}
    assert sidecar["livenessProbe"]["tcpSocket"] == {"port": 50053}
    assert {p["containerPort"] for p in sidecar["ports"]} == {50051, 9102, 50053}
    env = env_of(sidecar)
    assert env["CONFIG_SERVICE_REFRESH_PORT"] == "50051"  # where podSync registers the pod
    assert env["CONFIG_SERVICE_CONFIG_HOST"] == "127.0.0.1"
    assert env["CONFIG_SERVICE_LOCAL_HTTP_HOST"] == "127.0.0.1"
    assert env["CONFIG_SERVICE_LOCAL_HTTP_PORT"] == "2773"
    assert env["CONFIG_SERVICE_PREFIXES"] == "/orders/"
    assert env["CONFIG_SERVICE_LOCAL_FILES_DIR"] == "/config-refresh/files"
    assert env["CONFIG_SERVICE_LOCAL_FILES_SECURE_DIR"] == "/config-refresh/secure"
    # Plaintext route: no token, invalidations only.
    assert env["CONFIG_SERVICE_INSECURE_REFRESH"] == "true"
    assert env["CONFIG_SERVICE_REFRESH_ACCEPT_VALUES"] == "false"
    volumes = {v["name"]: v for v in injected["spec"]["volumes"]}
    assert volumes["config-refresh-secure"]["emptyDir"]["medium"] == "Memory"
    assert "medium" not in volumes["config-refresh-files"]["emptyDir"]
    (app,) = injected["spec"]["containers"]
    assert {(m["name"], m["mountPath"], m["readOnly"]) for m in app["volumeMounts"]} == {
        ("config-refresh-files", "/config-refresh/files", True),
        ("config-refresh-secure", "/config-refresh/secure", True),
    }
    assert injected["metadata"]["annotations"][INJECTED] == "orders"
    assert "shareProcessNamespace" not in injected["spec"]


def test_a_second_admission_is_a_no_op() -> None:
    injected = inject(pod(), route(), TEMPLATE)
    assert injected is not None
    assert inject(injected, route(), TEMPLATE) is None


def test_optional_annotations() -> None:
    annotations = {
        "configrefresh.io/inject": "orders",
        "configrefresh.io/prefixes": "/orders/a/, /orders/b/",
        "configrefresh.io/http-port": "2772",
        "configrefresh.io/http-secure-strings": "true",
        "configrefresh.io/files-dir": "/etc/orders/",
        "configrefresh.io/secure-files-dir": "/run/secrets/orders",
        "configrefresh.io/reload-url": "http://127.0.0.1:8080/-/reload",
        "configrefresh.io/reload-signal": "SIGHUP",
        "configrefresh.io/reload-process": "orders",
    }
    injected = inject(pod(annotations), route(), TEMPLATE)
    assert injected is not None
    env = env_of(sidecar_of(injected))
    assert env["CONFIG_SERVICE_PREFIXES"] == "/orders/a/,/orders/b/"
    assert env["CONFIG_SERVICE_LOCAL_HTTP_PORT"] == "2772"
    assert env["CONFIG_SERVICE_LOCAL_HTTP_SECURE_STRINGS"] == "true"
    assert env["CONFIG_SERVICE_LOCAL_FILES_DIR"] == "/etc/orders"
    assert env["CONFIG_SERVICE_LOCAL_RELOAD_URL"] == "http://127.0.0.1:8080/-/reload"
    assert env["CONFIG_SERVICE_LOCAL_RELOAD_SIGNAL"] == "SIGHUP"
    assert env["CONFIG_SERVICE_LOCAL_RELOAD_PROCESS_NAME"] == "orders"
    assert injected["spec"]["shareProcessNamespace"] is True
    mounts = {m["mountPath"] for m in injected["spec"]["containers"][0]["volumeMounts"]}
    assert mounts == {"/etc/orders", "/run/secrets/orders"}


def test_tls_route_with_service_account_tokens() -> None:
    template = SidecarTemplate(
        image="cs:1", refresh_allowed_users=("system:serviceaccount:config-refresh:config-refresh-operator",)
    )
    tls_route = route(
        refresh={"payload": "value", "tls": {"enabled": True}, "auth": {"type": "serviceAccountToken"}}
    )
    with pytest.raises(InjectionRefused, match="tls-secret"):
        inject(pod(), tls_route, template)
    annotations = {**pod()["metadata"]["annotations"], "configrefresh.io/tls-secret": "orders-tls"}
    injected = inject(pod(annotations), tls_route, template)
    assert injected is not None
    sidecar = sidecar_of(injected)
    env = env_of(sidecar)
    assert env["CONFIG_SERVICE_REFRESH_TLS_CERT_FILE"] == "/etc/config-service/tls/tls.crt"
    assert env["CONFIG_SERVICE_TOKENREVIEW_AUDIENCE"] == "configrefresh.io/prod.internal/orders"
    assert env["CONFIG_SERVICE_TOKENREVIEW_ALLOWED_USERS"].endswith(":config-refresh-operator")
    assert "CONFIG_SERVICE_INSECURE_REFRESH" not in env
    assert "CONFIG_SERVICE_REFRESH_ACCEPT_VALUES" not in env  # values over TLS are accepted
    assert "CONFIG_SERVICE_CONFIG_TLS_CERT_FILE" not in env  # gRPC reads stay plaintext on loopback
    volumes = {v["name"]: v for v in injected["spec"]["volumes"]}
    assert volumes["config-refresh-tls"]["secret"]["secretName"] == "orders-tls"
    assert {
        "name": "config-refresh-tls",
        "mountPath": "/etc/config-service/tls",
        "readOnly": True,
    } in sidecar["volumeMounts"]
    settings = config_service_settings(injected, tls_dir=Path(tempfile.mkdtemp()))
    assert settings.refresh_tls
    assert settings.tokenreview_audience == "configrefresh.io/prod.internal/orders"
    assert settings.config_loopback
    with pytest.raises(InjectionRefused, match="refreshAllowedUsers"):
        inject(pod(annotations), tls_route, TEMPLATE)


@pytest.mark.parametrize(
    ("the_route", "annotations", "message"),
    [
        (None, None, "not found in namespace apps"),
        (route(podSync=None), None, "has no spec.podSync"),
        (
            route(podSync={"selector": {"matchLabels": {"app": "billing"}}, "port": 50051}),
            None,
            "does not select",
        ),
        (
            route(podSync={"selector": {"matchLabels": {"app": "orders"}}, "port": 8080}),
            None,
            "already container",
        ),
        (route(), {"configrefresh.io/inject": "orders"}, "prefixes is required"),
        (
            route(),
            {"configrefresh.io/inject": "orders", "configrefresh.io/prefixes": "/billing/"},
            "not under",
        ),
        (
            route(),
            {
                "configrefresh.io/inject": "orders",
                "configrefresh.io/prefixes": "/orders/",
                "configrefresh.io/http-port": "x",
            },
            "port number",
        ),
        (
            route(),
            {
                "configrefresh.io/inject": "orders",
                "configrefresh.io/prefixes": "/orders/",
                "configrefresh.io/reload-signal": "HUP",
            },
            "go together",
        ),
        (
            route(refresh={"auth": {"type": "serviceAccountToken"}, "insecureAllowPlaintext": True}),
            None,
            "without TLS",
        ),
        (route(refresh={"auth": {"type": "bearerToken"}, "tls": {"enabled": True}}), None, "tls-secret"),
    ],
)
def test_a_pod_that_asks_but_cannot_be_served_is_refused(
    the_route: dict[str, Any] | None, annotations: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(InjectionRefused, match=message):
        inject(pod(annotations), the_route, TEMPLATE)


def test_kopf_turns_the_injected_pod_into_a_json_patch_that_reproduces_it() -> None:
    original = pod()
    injected = inject(original, route(), TEMPLATE)
    assert injected is not None
    patch = kopf.Patch(body=kopf.Body(cast(kopf.RawBody, copy.deepcopy(original))))
    patch.fns.append(lambda body: apply_in_place(body, injected))  # type: ignore[arg-type]
    ops = patch.as_json_patch()
    assert all(op["path"].startswith(("/spec", "/metadata/annotations")) for op in ops)
    assert jsonpatch.apply_patch(original, ops) == injected


def config_service_settings(injected: dict[str, Any], tls_dir: Path | None = None) -> Settings:
    """config-service's settings from the injected container's environment (directories remapped)."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as secure, tempfile.TemporaryDirectory() as files:
        env = {e["name"]: e["value"] for e in sidecar_of(injected)["env"] if "value" in e} | {
            "CONFIG_SERVICE_INSTANCE_ID": "orders-abc",
            "CONFIG_SERVICE_LOCAL_FILES_DIR": files,
            "CONFIG_SERVICE_LOCAL_FILES_SECURE_DIR": secure,
        }
        if tls_dir is not None:
            for key in ("CONFIG_SERVICE_REFRESH_TLS_CERT_FILE", "CONFIG_SERVICE_REFRESH_TLS_KEY_FILE"):
                path = tls_dir / Path(env[key]).name
                path.write_text("pem")
                env[key] = str(path)
        return Settings.from_sources([], env)


def test_config_service_accepts_the_injected_environment() -> None:
    injected = inject(pod(), route(), TEMPLATE)
    assert injected is not None
    settings = config_service_settings(injected)
    assert settings.local_http_port == 2773
    assert settings.insecure_refresh is True
    assert settings.refresh_accept_values is False
    assert settings.config_loopback


def test_template_from_the_chart_json(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.json"
    path.write_text(json.dumps({"image": "cs:2", "healthPort": 50060, "refreshAllowedUsers": ["u"]}))
    template = load_template(path)
    assert template.image == "cs:2"
    assert template.health_port == 50060
    assert template.refresh_allowed_users == ("u",)
    for bad, message in (
        ({}, "'image' is required"),
        ({"image": "x", "bogus": 1}, "unknown"),
        ({"image": "x", "httpPort": 0}, "port number"),
        ({"image": "x", "httpPort": True}, "must be int"),
    ):
        with pytest.raises(TemplateError, match=message):
            template_from_mapping(bad)


def test_injection_settings(tmp_path: Path) -> None:
    base = {"CONFIG_REFRESH_QUEUE_URL": "http://127.0.0.1/q", "AWS_REGION": "us-east-1"}
    assert not load_settings(base).injection_enabled
    with pytest.raises(SettingsError, match="INJECTION_CERT_FILE is required"):
        load_settings({**base, "CONFIG_REFRESH_INJECTION_ENABLED": "true"})
    files = {}
    for key in ("CERT_FILE", "KEY_FILE", "TEMPLATE_FILE"):
        (tmp_path / key).write_text("x")
        files[f"CONFIG_REFRESH_INJECTION_{key}"] = str(tmp_path / key)
    settings = load_settings({**base, "CONFIG_REFRESH_INJECTION_ENABLED": "true", **files})
    assert settings.injection_enabled
    assert settings.injection_port == 9443
    assert settings.injection_cert_file == tmp_path / "CERT_FILE"
    with pytest.raises(SettingsError, match="INJECTION_PORT"):
        load_settings({**base, "CONFIG_REFRESH_INJECTION_PORT": "99999"})
