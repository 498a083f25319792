"""The test control plane itself: the identities it hands out, RBAC, restarts, what a missing kubelet means,
and that it never outlives the process that started it nor skips when it cannot run."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from devstack.controlplane.build import build_dir
from devstack.controlplane.plane import ControlPlane
from devstack.controlplane.procs import pid_runs

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(proc.stdout)
    return obj


def _wait_for(predicate: Any, timeout: float = 30.0) -> bool:
    """RBAC changes reach the authorizer through an informer: poll briefly instead of sleeping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


# ------------------------------------------------------------------------------------------ identities


def test_server_runs_the_pinned_kubernetes_version(control_plane: ControlPlane) -> None:
    versions = _json(control_plane.kubectl("version", "-o", "json"))
    assert versions["serverVersion"]["gitVersion"] == "v1.35.4"
    assert control_plane.server.startswith("https://127.0.0.1:")


def test_admin_kubeconfig_is_cluster_admin_through_system_masters(control_plane: ControlPlane) -> None:
    review = _json(control_plane.kubectl("auth", "whoami", "-o", "json"))
    assert "system:masters" in review["status"]["userInfo"]["groups"]
    assert control_plane.kubectl("auth", "can-i", "*", "*", "--all-namespaces").stdout.strip() == "yes"


def test_service_account_token_authenticates(control_plane: ControlPlane, kube_namespace: str) -> None:
    token = control_plane.issue_token(kube_namespace, "robot")
    kubeconfig = control_plane.kubeconfig_for_token(token)
    review = _json(control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig))
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{kube_namespace}:robot"

    from kubernetes import client

    with control_plane.api_client(kubeconfig) as api:
        body = client.V1SelfSubjectReview()
        result: Any = client.AuthenticationV1Api(api).create_self_subject_review(body=body)
    user = result.status.user_info
    assert user.username == f"system:serviceaccount:{kube_namespace}:robot"
    assert f"system:serviceaccounts:{kube_namespace}" in (user.groups or [])


def test_token_with_another_audience_is_for_that_audience_only(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    token = control_plane.issue_token(kube_namespace, "caller", audiences=["config-refresh"], ttl=600)
    claims = _jwt_claims(token)
    assert claims["aud"] == ["config-refresh"]
    assert claims["exp"] - claims["iat"] == 600
    # The API server itself does not accept it (wrong audience) ...
    whoami = control_plane.kubectl(
        "auth", "whoami", kubeconfig=control_plane.kubeconfig_for_token(token), check=False
    )
    assert whoami.returncode != 0
    assert "Unauthorized" in whoami.stderr or "credentials" in whoami.stderr
    # ... but a TokenReview for that audience (what a refreshed service would do) authenticates it.
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": ["config-refresh"]},
    }
    result = _json(control_plane.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)))
    assert result["status"]["authenticated"] is True
    assert result["status"]["user"]["username"] == f"system:serviceaccount:{kube_namespace}:caller"


def test_rbac_denies_what_no_role_grants_and_allows_what_a_role_grants(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    token = control_plane.issue_token(kube_namespace, "reader")
    as_reader = control_plane.kubeconfig_for_token(token)

    denied = control_plane.kubectl(
        "get", "configrefreshes", "-n", kube_namespace, kubeconfig=as_reader, check=False
    )
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert f"system:serviceaccount:{kube_namespace}:reader" in denied.stderr

    control_plane.kubectl(
        "create", "role", "refresh-reader", "-n", kube_namespace,
        "--verb=get,list,watch", "--resource=configrefreshes.configrefresh.io",
    )  # fmt: skip
    control_plane.kubectl(
        "create", "rolebinding", "refresh-reader", "-n", kube_namespace,
        "--role=refresh-reader", f"--serviceaccount={kube_namespace}:reader",
    )  # fmt: skip

    def can(verb: str, resource: str, namespace: str = kube_namespace, subresource: str = "") -> bool:
        proc = control_plane.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, f"--subresource={subresource}",
            kubeconfig=as_reader, check=False,
        )  # fmt: skip
        return proc.stdout.strip() == "yes"

    assert _wait_for(lambda: can("list", "configrefreshes.configrefresh.io"))
    listed = control_plane.kubectl("get", "configrefreshes", "-n", kube_namespace, kubeconfig=as_reader)
    assert listed.returncode == 0
    assert not can("create", "configrefreshes.configrefresh.io")
    assert not can("list", "configroutes.configrefresh.io")
    assert not can("patch", "configrefreshes.configrefresh.io", subresource="status")
    assert not can("list", "configrefreshes.configrefresh.io", namespace="default")
    assert not can("list", "secrets")


# ---------------------------------------------------------------------------- no kubelet, no controllers


def test_pods_are_objects_whose_status_a_test_patches(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "orders-0", "labels": {"app": "orders"}},
        "spec": {"containers": [{"name": "app", "image": "example.invalid/orders:1"}]},
    }
    control_plane.kubectl("apply", "-n", kube_namespace, "-f", "-", input=json.dumps(pod))
    created = _json(control_plane.kubectl("get", "-n", kube_namespace, "pod/orders-0", "-o", "json"))
    assert created["status"]["phase"] == "Pending"
    assert "podIP" not in created["status"]  # no kubelet: nothing ever runs it

    status = {
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.11",
            "podIPs": [{"ip": "127.0.0.11"}],
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-26T10:00:00Z"}],
        }
    }
    control_plane.kubectl(
        "patch", "-n", kube_namespace, "pod/orders-0", "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    patched = _json(control_plane.kubectl("get", "-n", kube_namespace, "pod/orders-0", "-o", "json"))
    assert patched["status"]["podIP"] == "127.0.0.11"
    assert patched["status"]["conditions"][0]["type"] == "Ready"


def test_a_deleted_pod_bound_to_a_node_stays_terminating(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "orders-1"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "example.invalid/orders:1"}]},
    }
    control_plane.kubectl("apply", "-n", kube_namespace, "-f", "-", input=json.dumps(pod))
    control_plane.kubectl("delete", "-n", kube_namespace, "pod/orders-1", "--wait=false")
    stored = _json(control_plane.kubectl("get", "-n", kube_namespace, "pod/orders-1", "-o", "json"))
    assert stored["metadata"]["deletionTimestamp"]
    control_plane.kubectl("delete", "-n", kube_namespace, "pod/orders-1", "--grace-period=0", "--force")
    gone = control_plane.kubectl("get", "-n", kube_namespace, "pod/orders-1", check=False)
    assert "NotFound" in gone.stderr


def test_namespaces_have_no_default_service_account(control_plane: ControlPlane, kube_namespace: str) -> None:
    proc = control_plane.kubectl("get", "serviceaccount", "default", "-n", kube_namespace, check=False)
    assert proc.returncode != 0
    assert "NotFound" in proc.stderr


# --------------------------------------------------------------------------------------------- restarts


def test_apiserver_restart_keeps_objects(control_plane: ControlPlane, kube_namespace: str) -> None:
    control_plane.kubectl("create", "configmap", "survivor", "-n", kube_namespace, "--from-literal=k=v")
    port = control_plane.server
    control_plane.stop_apiserver()
    down = control_plane.kubectl("get", "configmap", "survivor", "-n", kube_namespace, check=False)
    assert down.returncode != 0
    assert "refused" in down.stderr
    control_plane.start_apiserver()
    assert control_plane.server == port
    value = control_plane.kubectl(
        "get", "configmap", "survivor", "-n", kube_namespace, "-o", "jsonpath={.data.k}"
    ).stdout
    assert value == "v"


def test_logs_are_files_that_name_each_server(control_plane: ControlPlane) -> None:
    assert set(control_plane.log_paths) == {"etcd", "kube-apiserver"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in control_plane.log_paths.values())
    assert "kube-apiserver" in control_plane.log_tails()


def test_helm_talks_to_the_control_plane(control_plane: ControlPlane) -> None:
    assert "v3.22.0" in control_plane.helm("version", "--short").stdout
    assert control_plane.helm("list", "--all-namespaces", "-o", "json").stdout.strip() == "[]"


# ------------------------------------------------------------------ lifecycle of separate control planes


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "hack")
    env.update(extra)
    return env


def test_cli_up_env_down(tmp_path: Path) -> None:
    env = _env(CONFIG_REFRESH_CONTROLPLANE_STATE=str(tmp_path / "state.json"))
    cli = [PYTHON, str(REPO / "hack" / "controlplane")]
    up = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=240, check=True)
    try:
        line = subprocess.run(
            [*cli, "env"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert line.startswith("export KUBECONFIG=")
        assert line in up.stdout
        kubeconfig = line.removeprefix("export KUBECONFIG=")
        kubectl = str(build_dir() / "bin" / "kubectl")
        namespaces = subprocess.run(
            [kubectl, f"--kubeconfig={kubeconfig}", "get", "namespaces", "-o", "name"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert "namespace/default" in namespaces
        state = json.loads((tmp_path / "state.json").read_text())
        pids = state["pids"]
    finally:
        down = subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "stopped kube-apiserver" in down.stdout
    assert not any(pid_runs(pid, Path(state["executables"][name])) for name, pid in pids.items())
    assert not Path(state["workdir"]).exists()
    gone = subprocess.run([*cli, "env"], env=env, capture_output=True, text=True, check=False)
    assert gone.returncode != 0
    assert "no control plane is running" in gone.stderr


def test_ctrl_c_stops_the_servers(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, signal, sys, time
        from devstack.controlplane.plane import ControlPlane
        # As in an interactive session, whatever started the suite: a background job (`make test &`)
        # inherits SIGINT ignored, and Python then raises no KeyboardInterrupt on Ctrl-C.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        plane = ControlPlane.start()
        print(json.dumps({"pids": plane.pids, "workdir": str(plane.workdir)}), flush=True)
        time.sleep(600)
        """
    )
    bins = build_dir() / "bin"
    with subprocess.Popen(
        [PYTHON, "-c", script], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            assert pid_runs(info["pids"]["etcd"], bins / "etcd")
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:  # never leave it (and a ResourceWarning in a later test) behind
                proc.kill()
                proc.communicate()
    assert "KeyboardInterrupt" in stderr
    assert not pid_runs(info["pids"]["etcd"], bins / "etcd")
    assert not pid_runs(info["pids"]["kube-apiserver"], bins / "kube-apiserver")
    assert not Path(info["workdir"]).exists()


def test_a_failing_test_prints_log_tails_and_stops_the_servers(tmp_path: Path) -> None:
    (tmp_path / "test_fails.py").write_text(
        textwrap.dedent(
            """
            import json, pathlib
            def test_fails(control_plane):
                pathlib.Path("pids.json").write_text(json.dumps(control_plane.pids))
                assert control_plane.kubectl("get", "namespace", "nope", check=False).returncode == 0
            """
        )
    )
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "-p", "devstack.fixtures.kube", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "1 failed" in result.stdout
    assert "control plane logs (tails)" in result.stdout
    assert "---- kube-apiserver:" in result.stdout
    bins = build_dir() / "bin"
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert not pid_runs(pids["etcd"], bins / "etcd")
    assert not pid_runs(pids["kube-apiserver"], bins / "kube-apiserver")


def test_fixture_fails_rather_than_skips_without_go_or_binaries(tmp_path: Path) -> None:
    (tmp_path / "test_needs_plane.py").write_text("def test_needs_plane(control_plane):\n    pass\n")
    go_free_path = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "go").exists()
    )
    assert shutil.which("go", path=go_free_path) is None
    env = _env(PATH=go_free_path, XDG_CACHE_HOME=str(tmp_path / "empty-cache"))
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "-p", "devstack.fixtures.kube", "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "1 error" in result.stdout
    assert "skipped" not in result.stdout
    assert "the e2e tier needs Go" in result.stdout
    assert "hack/controlplane build" in result.stdout
