"""The sidecar injection webhook on a real kube-apiserver (issue 21).

The operator runs as it ships (``config-refresh-operator`` with ``CONFIG_REFRESH_INJECTION_*``), its
webhook serving HTTPS on 127.0.0.1 with a certificate signed by the control plane's CA. The test registers
a MutatingWebhookConfiguration by URL with that CA as caBundle, as the operator chart does by Service, and
creates pods: the API server calls the webhook over TLS and stores what it answers. Then a real
config-service process is started from exactly the injected container's environment (the kubelet's part
done by hand: fieldRefs resolved, ports and directories remapped to free ports and temporary directories)
and serves a change over the HTTP long poll and through the file swap. The sidecar template is the one
the operator chart renders (helm template), so the injected spec is what an install would inject.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc
from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.services.fleet import service_command
from devstack.stack.kube import route_object, wait_for, wait_route_ready
from devstack.stack.operator import OperatorProcess, free_port

ROUTE = "orders"
LABEL = "configrefresh.io/inject"
SIDECAR_IMAGE = "registry.example/config-service:test"
CHART = Path(__file__).resolve().parents[2] / "charts" / "config-refresh-operator"


def webhook_configuration(name: str, namespace: str, url: str, ca_file: Path, policy: str) -> dict[str, Any]:
    """What the operator chart renders, with a URL instead of its Service (no cluster network here)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "inject.configrefresh.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": policy,
                "timeoutSeconds": 5,
                "reinvocationPolicy": "Never",
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_file.read_bytes()).decode()},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "objectSelector": {"matchLabels": {LABEL: "enabled"}},
                # This test's namespace only: the control plane is shared with other tests.
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            }
        ],
    }


def chart_sidecar_template(control_plane: ControlPlane, local_aws: LocalAws) -> str:
    """The sidecar template exactly as the operator chart renders it into its ConfigMap (the
    config-service chart's security context, resources, probes, ports), pointed at the local AWS stack."""
    rendered = control_plane.helm(
        "template",
        "rel",
        str(CHART),
        "--namespace",
        "config-refresh",
        "--show-only",
        "templates/operator-webhook.yaml",
        "--set",
        "aws.queueUrl=https://sqs.example/queue",
        "--set",
        "injection.enabled=true",
        "--set",
        f"injection.image.repository={SIDECAR_IMAGE.split(':')[0]}",
        "--set",
        f"injection.image.tag={SIDECAR_IMAGE.split(':')[1]}",
        "--set",
        f"injection.sidecar.awsRegion={local_aws.region}",
        "--set",
        f"injection.sidecar.awsEndpointUrl={local_aws.endpoint_url}",
    ).stdout
    (config_map,) = [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "ConfigMap"]
    text: str = config_map["data"]["sidecar.json"]
    return text


def pod_manifest(name: str, *, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "orders:1", "ports": [{"containerPort": 8080}]}]},
    }


@pytest.fixture
def injection(
    control_plane: ControlPlane,
    kube_namespace: str,
    local_aws: LocalAws,
    operator_process: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> Iterator[tuple[OperatorProcess, Callable[[str], None]]]:
    """The operator with injection on, a podSync route, and a factory registering the webhook by policy."""
    template_file = tmp_path / "sidecar.json"
    template_file.write_text(chart_sidecar_template(control_plane, local_aws))
    route = route_object(ROUTE, local_aws=local_aws, prefix=local_aws.prefix, payload="invalidate")
    route["spec"]["podSync"] = {"selector": {"matchLabels": {"app": "orders"}}, "port": 50051}
    control_plane.kubectl("apply", "-n", kube_namespace, "-f", "-", input=json.dumps(route))
    port = free_port()
    operator = operator_process(
        CONFIG_REFRESH_INJECTION_ENABLED="true",
        CONFIG_REFRESH_INJECTION_ADDRESS="127.0.0.1",
        CONFIG_REFRESH_INJECTION_PORT=str(port),
        CONFIG_REFRESH_INJECTION_CERT_FILE=str(control_plane.pki.serving_cert),
        CONFIG_REFRESH_INJECTION_KEY_FILE=str(control_plane.pki.serving_key),
        CONFIG_REFRESH_INJECTION_TEMPLATE_FILE=str(template_file),
    )
    wait_route_ready(control_plane, kube_namespace, ROUTE)  # indexed: handlers run after the indexes fill
    wait_for(lambda: _listening(port), what="the webhook server listening")
    name = f"config-refresh-inject-{kube_namespace}"

    def register(policy: str) -> None:
        configuration = webhook_configuration(
            name, kube_namespace, f"https://127.0.0.1:{port}/inject", control_plane.pki.ca_cert, policy
        )
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(configuration))

    yield operator, register
    control_plane.kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def create_pod(control_plane: ControlPlane, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = json.loads(
        control_plane.kubectl(
            "create", "-n", namespace, "-f", "-", "-o", "json", input=json.dumps(manifest)
        ).stdout
    )
    return created


def test_the_api_server_injects_the_sidecar_through_the_webhook_and_outages_do_not_block(
    control_plane: ControlPlane,
    kube_namespace: str,
    local_aws: LocalAws,
    injection: tuple[OperatorProcess, Callable[[str], None]],
) -> None:
    operator, register = injection
    register("Ignore")
    asks = {LABEL: ROUTE, "configrefresh.io/prefixes": local_aws.prefix}
    labels = {"app": "orders", LABEL: "enabled"}

    # The webhook configuration takes effect asynchronously in the API server: wait for the first injection.
    def injected_pod() -> dict[str, Any] | None:
        name = f"orders-{time.monotonic_ns()}"
        created = create_pod(
            control_plane, kube_namespace, pod_manifest(name, labels=labels, annotations=asks)
        )
        return created if created["spec"].get("initContainers") else None

    pod = wait_for(injected_pod, what="a pod created with the sidecar", interval=0.5)
    (sidecar,) = pod["spec"]["initContainers"]
    assert sidecar["name"] == "config-service"
    assert sidecar["image"] == SIDECAR_IMAGE
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert sidecar["securityContext"]["runAsNonRoot"] is True
    assert sidecar["resources"]["limits"] == {"cpu": "1", "memory": "256Mi"}
    assert sidecar["readinessProbe"]["grpc"]["port"] == 50053
    assert {p["containerPort"] for p in sidecar["ports"]} >= {50051}  # podSync's port: the route's
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config-refresh-secure"]["emptyDir"]["medium"] == "Memory"
    assert "config-refresh-files" in volumes
    (app,) = pod["spec"]["containers"]
    assert {m["mountPath"] for m in app["volumeMounts"] if m["name"].startswith("config-refresh")} == {
        "/config-refresh/files",
        "/config-refresh/secure",
    }
    assert pod["metadata"]["annotations"]["configrefresh.io/injected"] == ROUTE

    # podSync registers the injected pod, once Ready (what a kubelet would report), at the sidecar's port.
    status = {
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.9",
            "podIPs": [{"ip": "127.0.0.9"}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            ],
        }
    }
    control_plane.kubectl(
        "patch",
        "pod",
        pod["metadata"]["name"],
        "-n",
        kube_namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    cloud_map = local_aws.client("servicediscovery")

    def registered() -> dict[str, str] | None:
        for instance in cloud_map.list_instances(ServiceId=local_aws.service_id)["Instances"]:
            attributes: dict[str, str] = instance.get("Attributes", {})
            if (attributes.get("k8s-namespace"), attributes.get("k8s-pod")) == (
                kube_namespace,
                pod["metadata"]["name"],
            ):
                return attributes
        return None

    attributes = wait_for(registered, what="podSync registering the injected pod")
    assert (attributes["AWS_INSTANCE_IPV4"], attributes["AWS_INSTANCE_PORT"]) == ("127.0.0.9", "50051")

    # Labelled (so the webhook is called) but no annotation: untouched. Unlabelled: never even called.
    plain = create_pod(control_plane, kube_namespace, pod_manifest("plain", labels=labels, annotations={}))
    assert "initContainers" not in plain["spec"]
    assert [c["name"] for c in plain["spec"]["containers"]] == ["app"]
    assert "volumes" not in plain["spec"]
    assert "configrefresh.io/injected" not in (plain["metadata"].get("annotations") or {})
    unlabelled = create_pod(
        control_plane, kube_namespace, pod_manifest("unlabelled", labels={"app": "orders"}, annotations=asks)
    )
    assert "initContainers" not in unlabelled["spec"]

    # A pod that asks for a route that does not exist is refused with the reason.
    refused = control_plane.kubectl(
        "create",
        "-n",
        kube_namespace,
        "-f",
        "-",
        check=False,
        input=json.dumps(pod_manifest("lost", labels=labels, annotations={**asks, LABEL: "nope"})),
    )
    assert refused.returncode != 0
    assert "ConfigRoute nope not found" in refused.stderr

    # Webhook down (the operator is gone): with failurePolicy Ignore an unrelated labelled pod still creates.
    operator.kill()
    wait_for(lambda: not _listening(int(operator.env["CONFIG_REFRESH_INJECTION_PORT"])), what="webhook down")
    during = create_pod(
        control_plane, kube_namespace, pod_manifest("during-outage", labels=labels, annotations={})
    )
    assert during["metadata"]["name"] == "during-outage"
    # ... and with Fail, the same pod is refused: the policy is what keeps an outage from blocking.
    register("Fail")

    def refused_by_policy() -> bool:
        manifest = pod_manifest(f"blocked-{time.monotonic_ns()}", labels=labels, annotations={})
        result = control_plane.kubectl(
            "create", "-n", kube_namespace, "-f", "-", check=False, input=json.dumps(manifest)
        )
        return result.returncode != 0 and "inject.configrefresh.io" in result.stderr

    wait_for(refused_by_policy, what="failurePolicy Fail refusing while the webhook is down", interval=0.5)


def _resolve_env(container: dict[str, Any], pod: dict[str, Any], remap: dict[str, str]) -> dict[str, str]:
    """The kubelet's part: fieldRefs resolved; then ports and paths remapped for a process on this host."""
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            path = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = {
                "metadata.name": pod["metadata"]["name"],
                "metadata.namespace": pod["metadata"]["namespace"],
            }[path]
    unknown = sorted(set(remap) - set(env))
    assert not unknown, f"the injected spec has no {unknown}"
    return env | remap


def test_a_config_service_started_from_the_injected_spec_serves_changes_over_http_and_files(
    control_plane: ControlPlane,
    kube_namespace: str,
    local_aws: LocalAws,
    injection: tuple[OperatorProcess, Callable[[str], None]],
    tmp_path: Path,
) -> None:
    _operator, register = injection
    register("Fail")
    ssm = local_aws.client("ssm")
    name = f"{local_aws.prefix}db_url"
    ssm.put_parameter(Name=name, Value="postgres://one", Type="String")
    asks = {LABEL: ROUTE, "configrefresh.io/prefixes": local_aws.prefix}
    labels = {"app": "orders", LABEL: "enabled"}

    def injected_pod() -> dict[str, Any] | None:
        manifest = pod_manifest(f"orders-{time.monotonic_ns()}", labels=labels, annotations=asks)
        result = control_plane.kubectl(
            "create", "-n", kube_namespace, "-f", "-", "-o", "json", check=False, input=json.dumps(manifest)
        )
        if result.returncode != 0:
            return None  # the configuration is not active in the API server yet (Fail: not reachable)
        created: dict[str, Any] = json.loads(result.stdout)
        return created if created["spec"].get("initContainers") else None

    pod = wait_for(injected_pod, what="an injected pod", interval=0.5)
    (sidecar,) = pod["spec"]["initContainers"]
    ports = {key: str(free_port()) for key in ("REFRESH", "CONFIG", "METRICS", "HEALTH", "LOCAL_HTTP")}
    files = tmp_path / "files"
    files.mkdir()
    secure = Path(tempfile.mkdtemp(prefix="inject-secure-", dir="/dev/shm"))  # tmpfs, as medium: Memory
    remap = {f"CONFIG_SERVICE_{key}_PORT": port for key, port in ports.items()} | {
        "CONFIG_SERVICE_HOST": "127.0.0.1",
        "CONFIG_SERVICE_LOCAL_FILES_DIR": str(files),
        "CONFIG_SERVICE_LOCAL_FILES_SECURE_DIR": str(secure),
    }
    env = _resolve_env(sidecar, pod, remap)
    assert env["CONFIG_SERVICE_LOCAL_HTTP_HOST"] == "127.0.0.1"
    # What a pod gets from IRSA, not from the spec: AWS credentials (the endpoint is the template's).
    credentials = {k: v for k, v in local_aws.env().items() if k.startswith("AWS_") and "ENDPOINT" not in k}
    process_env = {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", **credentials, **env}
    log_path = tmp_path / "sidecar.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            service_command(), env=process_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{ports['HEALTH']}"))

        def serving() -> bool:
            assert process.poll() is None, log_path.read_text()
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                return False
            return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

        wait_for(serving, what="the sidecar SERVING", timeout=120)
        base = f"http://127.0.0.1:{ports['LOCAL_HTTP']}"
        status, etag, body = _get(f"{base}/v1/config{name}")
        assert (status, etag, body["value"]) == (200, '"1"', "postgres://one")
        assert (files / "db_url").read_text() == "postgres://one"

        # A long poll parked on version 1 answers when the operator's refresh (invalidate) is applied.
        answers: list[tuple[int, str, dict[str, Any]]] = []
        poller = threading.Thread(
            target=lambda: answers.append(_get(f"{base}/v1/config{name}?wait=60s", {"If-None-Match": '"1"'}))
        )
        poller.start()
        ssm.put_parameter(Name=name, Value="postgres://two", Type="String", Overwrite=True)
        change = pb.RefreshRequest(
            refresh_id="e2e",
            parameter_name=name,
            version=2,
            operation=pb.OPERATION_UPSERT,
            payload_mode=pb.PAYLOAD_MODE_INVALIDATE,
        )
        change.last_modified.FromDatetime(datetime.now(UTC) + timedelta(minutes=1))
        with grpc.insecure_channel(f"127.0.0.1:{ports['REFRESH']}") as channel:
            result = refresh_service_pb2_grpc.RefreshServiceStub(channel).Refresh(change, timeout=10)
        assert result.result == pb.REFRESH_RESULT_APPLIED
        poller.join(timeout=60)
        assert answers, "the long poll did not answer"
        status, etag, body = answers[0]
        assert (status, etag, body["value"]) == (200, '"2"', "postgres://two")
        wait_for(lambda: (files / "db_url").read_text() == "postgres://two", what="the file swapped")
        assert os.readlink(files / "db_url") == "..data/db_url"

        # A value pushed over the plaintext refresh port is refused: invalidations only.
        pushed = pb.RefreshRequest(
            refresh_id="e2e-value",
            parameter_name=name,
            version=3,
            operation=pb.OPERATION_UPSERT,
            payload_mode=pb.PAYLOAD_MODE_VALUE,
            value="forged",
        )
        with (
            grpc.insecure_channel(f"127.0.0.1:{ports['REFRESH']}") as channel,
            pytest.raises(grpc.RpcError) as refused,
        ):
            refresh_service_pb2_grpc.RefreshServiceStub(channel).Refresh(pushed, timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(secure, ignore_errors=True)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (a loopback URL)
    with urllib.request.urlopen(request, timeout=90) as response:  # noqa: S310 (a loopback URL)
        return response.status, response.headers["ETag"], json.loads(response.read())


def test_the_api_server_accepts_what_the_chart_renders_for_injection(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    """The chart's webhook objects pass the API server's validation (server-side dry run)."""
    rendered = control_plane.helm(
        "template",
        "rel",
        str(CHART),
        "--namespace",
        kube_namespace,
        "--show-only",
        "templates/operator-webhook.yaml",
        "--set",
        "aws.queueUrl=https://sqs.example/queue",
        "--set",
        "injection.enabled=true",
        "--set",
        "injection.failurePolicy=Fail",
        "--set",
        f"watch.namespaces={{{kube_namespace},apps}}",
    ).stdout
    kinds = [doc["kind"] for doc in yaml.safe_load_all(rendered) if doc]
    assert sorted(kinds) == ["ConfigMap", "MutatingWebhookConfiguration", "Secret", "Service"]
    applied = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", "-o", "json", input=rendered)
    items = json.loads(applied.stdout)["items"]
    (configuration,) = [i for i in items if i["kind"] == "MutatingWebhookConfiguration"]
    (webhook,) = configuration["webhooks"]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["matchPolicy"] == "Equivalent"  # defaulted by the API server: the object was accepted
