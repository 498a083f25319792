"""devstack.services.rendered_pods: a rendered pod spec becomes the podman command line a kubelet's
choices imply.

The e2e image test (tests/e2e/test_images.py) runs the charts' real output; these cases pin the
translation itself, including what the charts do not render today (Secret volumes of the rendered output,
envFrom, projected tokens with an audience) and what must fail rather than be silently dropped.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from devstack.services.rendered_pods import PodSpecError, RenderedPod, load_manifests

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "svc-tls"},
    "data": {"tls.crt": base64.b64encode(b"CERT").decode(), "ca.crt": base64.b64encode(b"CA").decode()},
    "stringData": {"tls.key": "KEY"},
}
CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "settings"},
    "data": {"LEVEL": "DEBUG"},
}
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "svc"},
    "spec": {
        "template": {
            "metadata": {"labels": {"app": "svc"}},
            "spec": {
                "serviceAccountName": "svc-account",
                "terminationGracePeriodSeconds": 30,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "runAsGroup": 10001,
                    "fsGroup": 2000,
                },
                "containers": [
                    {
                        "name": "svc",
                        "image": "registry.example/svc:1",
                        "command": ["/bin/sh", "-c", "exec svc --bind 0.0.0.0"],
                        "args": ["--liveness", "http://0.0.0.0:8080/healthz"],
                        "env": [
                            {"name": "HOST", "value": "0.0.0.0"},
                            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            {
                                "name": "KEY",
                                "valueFrom": {"secretKeyRef": {"name": "svc-tls", "key": "tls.key"}},
                            },
                        ],
                        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}],
                        "ports": [{"name": "liveness", "containerPort": 8080}],
                        "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "volumeMounts": [
                            {"name": "tmp", "mountPath": "/tmp"},
                            {"name": "tls", "mountPath": "/etc/tls", "readOnly": True},
                            {"name": "token", "mountPath": "/var/run/secrets/app"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    {"name": "tls", "secret": {"secretName": "svc-tls", "defaultMode": 0o440}},
                    {
                        "name": "token",
                        "projected": {
                            "defaultMode": 0o440,
                            "sources": [
                                {
                                    "serviceAccountToken": {
                                        "path": "token",
                                        "audience": "svc",
                                        "expirationSeconds": 900,
                                    }
                                }
                            ],
                        },
                    },
                ],
            },
        }
    },
}


def _pod(
    tmp_path: Path, deployment: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[RenderedPod, list[Any]]:
    issued: list[Any] = []
    ca = tmp_path / "ca.crt"
    ca.write_text("API-CA")

    def issue(audience: str | None, seconds: int) -> str:
        issued.append((audience, seconds))
        return f"token-for-{audience}"

    pod = RenderedPod(
        deployment=copy.deepcopy(deployment or DEPLOYMENT),
        objects=[SECRET, CONFIGMAP],
        namespace="ns",
        pod_name="svc-abc12",
        pod_ip="127.100.0.10",
        image="localhost/svc:e2e",
        workdir=tmp_path / "pods",
        issue_token=issue,
        api_server=("127.0.0.1", 6443),
        api_ca=ca,
        container_name="c1",
        **kwargs,
    )
    return pod, issued


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def test_security_context_resources_and_network_follow_the_rendered_spec(tmp_path: Path) -> None:
    pod, _ = _pod(tmp_path)
    argv = pod.run_args()
    assert argv[:4] == ["podman", "--runtime", "runc", "run"]
    assert _pairs(argv, "--user") == ["10001:10001"]
    assert _pairs(argv, "--group-add") == ["2000"]
    assert "--read-only" in argv
    assert "--read-only-tmpfs=false" in argv, "only the pod's volumes may be writable"
    assert _pairs(argv, "--security-opt") == ["no-new-privileges"]
    assert _pairs(argv, "--cap-drop") == ["ALL"]
    assert _pairs(argv, "--network") == ["host"]
    assert _pairs(argv, "--memory") == [str(256 * 2**20)]
    assert _pairs(argv, "--cpus") == ["0.5"]


def test_command_args_and_env_with_the_pod_ip_in_place_of_0_0_0_0(tmp_path: Path) -> None:
    pod, _ = _pod(tmp_path, env_overrides={"AWS_ACCESS_KEY_ID": "testing"})
    argv = pod.run_args()
    assert json.loads(_pairs(argv, "--entrypoint")[0]) == ["/bin/sh", "-c", "exec svc --bind 127.100.0.10"]
    image_at = argv.index("localhost/svc:e2e")
    assert argv[image_at + 1 :] == ["--liveness", "http://127.100.0.10:8080/healthz"]
    env = dict(item.split("=", 1) for item in _pairs(argv, "--env"))
    assert env == {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": "6443",
        "APP_LEVEL": "DEBUG",
        "HOST": "127.100.0.10",
        "POD": "svc-abc12",
        "IP": "127.100.0.10",
        "KEY": "KEY",
        "AWS_ACCESS_KEY_ID": "testing",
    }


def test_volumes_are_written_like_the_kubelet_writes_them(tmp_path: Path) -> None:
    pod, issued = _pod(tmp_path)
    argv = pod.run_args()
    assert _pairs(argv, "--mount") == ["type=tmpfs,destination=/tmp,tmpfs-mode=1777,tmpfs-size=67108864"]
    volumes = {spec.split(":")[1]: Path(spec.split(":")[0]) for spec in _pairs(argv, "--volume")}
    assert all(spec.endswith(":ro") for spec in _pairs(argv, "--volume"))
    tls = volumes["/etc/tls"]
    assert {p.name: p.read_bytes() for p in tls.iterdir()} == {
        "tls.crt": b"CERT",
        "ca.crt": b"CA",
        "tls.key": b"KEY",
    }
    assert oct((tls / "tls.key").stat().st_mode & 0o777) == oct(0o440)
    assert (tls / "tls.key").stat().st_gid == (2000 if os.geteuid() == 0 else os.getegid())
    assert (volumes["/var/run/secrets/app"] / "token").read_text() == "token-for-svc"
    api = volumes["/var/run/secrets/kubernetes.io/serviceaccount"]
    assert (api / "ca.crt").read_text() == "API-CA"
    assert (api / "namespace").read_text() == "ns"
    assert (api / "token").read_text() == "token-for-None"
    assert ("svc", 900) in issued, "the projected token carries the rendered audience and lifetime"


def test_no_automounted_credentials_when_the_spec_turns_them_off(tmp_path: Path) -> None:
    deployment = copy.deepcopy(DEPLOYMENT)
    deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    pod, _ = _pod(tmp_path, deployment)
    argv = pod.run_args()
    assert not any("kubernetes.io/serviceaccount" in spec for spec in _pairs(argv, "--volume"))
    assert not any(item.startswith("KUBERNETES_SERVICE_") for item in _pairs(argv, "--env"))


def test_an_object_missing_from_the_output_is_looked_up_in_the_cluster_or_fails(tmp_path: Path) -> None:
    deployment = copy.deepcopy(DEPLOYMENT)
    deployment["spec"]["template"]["spec"]["volumes"][1]["secret"]["secretName"] = "user-made"
    pod, _ = _pod(tmp_path, deployment)
    with pytest.raises(PodSpecError, match="Secret user-made is neither"):
        pod.run_args()
    user_made = {**SECRET, "metadata": {"name": "user-made"}}
    pod, _ = _pod(
        tmp_path, deployment, cluster_lookup=lambda kind, name: user_made if name == "user-made" else None
    )
    assert any(spec.endswith(":/etc/tls:ro") for spec in _pairs(pod.run_args(), "--volume"))


def _host_path(spec: dict[str, Any]) -> None:
    spec["volumes"].append({"name": "x", "hostPath": {"path": "/"}})
    spec["containers"][0]["volumeMounts"].append({"name": "x", "mountPath": "/x"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_host_path, "not supported"),
        (lambda spec: spec["containers"][0]["securityContext"].update(privileged=True), "privileged"),
        (lambda spec: spec["containers"][0]["securityContext"].update(runAsUser=0), "runAsNonRoot"),
        (lambda spec: spec["containers"].append(spec["containers"][0]), "exactly one container"),
    ],
)
def test_what_the_harness_cannot_reproduce_fails_instead_of_being_dropped(
    tmp_path: Path, change: Any, message: str
) -> None:
    deployment = copy.deepcopy(DEPLOYMENT)
    change(deployment["spec"]["template"]["spec"])
    pod, _ = _pod(tmp_path, deployment)
    with pytest.raises(PodSpecError, match=message):
        pod.run_args()


def test_load_manifests_skips_empty_documents() -> None:
    text = "---\n# comment only\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
    assert [o["metadata"]["name"] for o in load_manifests(text)] == ["a"]
