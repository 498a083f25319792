"""Both charts on a real kube-apiserver: install, CRDs Established, upgrade, uninstall, and least privilege.

The control plane has RBAC on and no controller-manager or kubelet, so the Deployments never get pods:
what is checked is what the API server stores and authorizes. The chart's ServiceAccount gets a real token
(TokenRequest) and the questions are asked with that token: SelfSubjectAccessReviews for the matrix of
what the operator needs and what it must not do, plain API calls for a few of each, and finally the
operator itself, run locally under that identity, carrying a Parameter Store change to every instance.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
import trustme
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubernetes import client
from kubernetes.client import ApiException

from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.fixtures.services import FleetFactory

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_CHART = ROOT / "charts" / "config-refresh-operator"
SERVICE_CHART = ROOT / "charts" / "config-service"
ROLE_ARN = "arn:aws:iam::123456789012:role/config-refresh-operator"
FINAL_PHASES = {"Succeeded", "PartiallyFailed", "Failed"}
OPERATOR = str(Path(sys.executable).parent / "config-refresh-operator")
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/config-refresh-events"

# (verb, group, resource) the operator uses in a watched namespace.
NEEDED_IN_NAMESPACE = [
    ("get", "configrefresh.io", "configroutes"),
    ("list", "configrefresh.io", "configroutes"),
    ("watch", "configrefresh.io", "configroutes"),
    ("patch", "configrefresh.io", "configroutes"),
    ("patch", "configrefresh.io", "configroutes/status"),
    ("create", "configrefresh.io", "configrefreshes"),
    ("get", "configrefresh.io", "configrefreshes"),
    ("list", "configrefresh.io", "configrefreshes"),
    ("watch", "configrefresh.io", "configrefreshes"),
    ("patch", "configrefresh.io", "configrefreshes"),
    ("delete", "configrefresh.io", "configrefreshes"),
    ("patch", "configrefresh.io", "configrefreshes/status"),
    ("create", "", "events"),
    ("list", "", "pods"),
    ("watch", "", "pods"),
]
# What kopf needs cluster-wide in namespaced mode (resource and namespace observers).
NEEDED_CLUSTER_WIDE = [
    ("list", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("watch", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("list", "", "namespaces"),
    ("watch", "", "namespaces"),
]
# Things the operator never does: read Secrets, touch pods or workloads, write routes, escalate.
FORBIDDEN_IN_NAMESPACE = [
    ("get", "", "secrets"),
    ("list", "", "secrets"),
    ("delete", "", "pods"),
    ("create", "", "pods"),
    ("patch", "", "pods"),
    ("get", "", "configmaps"),
    ("create", "apps", "deployments"),
    ("delete", "", "events"),
    ("create", "configrefresh.io", "configroutes"),
    ("delete", "configrefresh.io", "configroutes"),
    ("update", "configrefresh.io", "configrefreshes"),
    ("create", "rbac.authorization.k8s.io", "roles"),
    ("create", "rbac.authorization.k8s.io", "rolebindings"),
    ("create", "", "serviceaccounts/token"),
    ("patch", "kopf.dev", "kopfpeerings"),
]
FORBIDDEN_CLUSTER_WIDE = [
    ("create", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("delete", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("list", "", "nodes"),
    ("list", "", "secrets"),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
]


def _helm(plane: ControlPlane, *args: str, check: bool = True) -> str:
    result = plane.helm(*args, check=check)
    return str(result.stdout)


class Release:
    """One `helm install` of a chart into the test namespace, uninstalled at the end if still there."""

    def __init__(self, plane: ControlPlane, namespace: str, chart: Path, name: str) -> None:
        self.plane = plane
        self.namespace = namespace
        self.chart = chart
        self.name = name
        self.installed = False

    def install(self, *sets: str) -> str:
        out = _helm(self.plane, "install", self.name, str(self.chart), "-n", self.namespace, *_sets(sets))
        self.installed = True
        return out

    def upgrade(self, *sets: str) -> str:
        return _helm(
            self.plane,
            "upgrade",
            self.name,
            str(self.chart),
            "-n",
            self.namespace,
            "--reuse-values",
            *_sets(sets),
        )

    def uninstall(self) -> str:
        out = _helm(self.plane, "uninstall", self.name, "-n", self.namespace)
        self.installed = False
        return out

    def manifest(self) -> str:
        return _helm(self.plane, "get", "manifest", self.name, "-n", self.namespace)

    @property
    def fullname(self) -> str:
        return f"{self.name}-{self.chart.name}"


def _sets(sets: tuple[str, ...]) -> list[str]:
    return [arg for item in sets for arg in ("--set", item)]


@pytest.fixture
def release(control_plane: ControlPlane, kube_namespace: str) -> Iterator[Callable[[Path], Release]]:
    """Factory of releases with unique names (their ClusterRoles are cluster-wide, tests share a cluster)."""
    made: list[Release] = []

    def make(chart: Path) -> Release:
        made.append(Release(control_plane, kube_namespace, chart, f"r{uuid.uuid4().hex[:8]}"))
        return made[-1]

    yield make
    for item in made:
        if item.installed:
            _helm(control_plane, "uninstall", item.name, "-n", kube_namespace, check=False)


def _operator_sets(*extra: str, queue_url: str = QUEUE_URL) -> tuple[str, ...]:
    return (
        f"aws.queueUrl={queue_url}",
        f"serviceAccount.roleArn={ROLE_ARN}",
        "image.repository=registry.example/config-refresh-operator",
        *extra,
    )


def _get(plane: ControlPlane, *args: str) -> Any:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


def _exists(plane: ControlPlane, *args: str) -> bool:
    return plane.kubectl("get", *args, "-o", "name", check=False).returncode == 0


def _identity_client(plane: ControlPlane, namespace: str, service_account: str) -> client.ApiClient:
    token = plane.issue_token(namespace, service_account, create=False)
    return plane.api_client(plane.kubeconfig_for_token(token))


def _allowed(api: client.ApiClient, verb: str, group: str, resource: str, namespace: str | None) -> bool:
    main, _, sub = resource.partition("/")
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, group=group, resource=main, subresource=sub or None, namespace=namespace
            )
        )
    )
    answer = client.AuthorizationV1Api(api).create_self_subject_access_review(review)
    return answer.status is not None and bool(answer.status.allowed)


def test_a_first_install_on_an_empty_cluster_creates_the_crds_before_the_objects_that_need_them() -> None:
    """On a cluster of its own (the shared one has the CRDs applied already): Helm installs crds/ first and
    waits for them, so the same first install can create the KopfPeering and the config-service's
    ConfigRoute."""
    with ControlPlane.start() as plane:
        assert plane.kubectl("get", "crd", "-o", "name").stdout.strip() == ""
        plane.create_namespace("config-refresh")
        _helm(
            plane,
            "install",
            "config-refresh-operator",
            str(OPERATOR_CHART),
            "-n",
            "config-refresh",
            *_sets(_operator_sets("replicaCount=2")),
        )
        crds = set(plane.kubectl("get", "crd", "-o", "name").stdout.split())
        assert crds == {
            "customresourcedefinition.apiextensions.k8s.io/configrefreshes.configrefresh.io",
            "customresourcedefinition.apiextensions.k8s.io/configroutes.configrefresh.io",
            "customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev",
            "customresourcedefinition.apiextensions.k8s.io/kopfpeerings.kopf.dev",
        }
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *sorted(crds))
        assert _exists(plane, "kopfpeering", "config-refresh-operator", "-n", "config-refresh")
        _helm(plane, "install", "config-service", str(SERVICE_CHART), "-n", "config-refresh")
        route = _get(plane, "configroute", "config-service", "-n", "config-refresh")
        assert route["spec"]["parameterPrefix"] == "/config-service/"
        assert route["spec"]["refresh"]["maxConcurrency"] == 64, "the chart's route passes the CRD's schema"


def test_both_charts_install_upgrade_and_uninstall(
    control_plane: ControlPlane, kube_namespace: str, release: Callable[[Path], Release]
) -> None:
    operator = release(OPERATOR_CHART)
    notes = operator.install(*_operator_sets())
    assert "kubectl --namespace" in notes, "NOTES.txt names the next commands"
    crds = re.findall(r"^  name: (\S+)$", _helm(control_plane, "show", "crds", str(OPERATOR_CHART)), re.M)
    assert set(crds) == {
        "configroutes.configrefresh.io",
        "configrefreshes.configrefresh.io",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    for name in crds:
        conditions = _get(control_plane, "crd", name)["status"]["conditions"]
        assert {"type": "Established", "status": "True"}.items() <= next(
            c for c in conditions if c["type"] == "Established"
        ).items(), name
    fullname = operator.fullname
    account = _get(control_plane, "serviceaccount", fullname, "-n", kube_namespace)
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE_ARN
    deployment = _get(control_plane, "deployment", fullname, "-n", kube_namespace)
    assert deployment["spec"]["replicas"] == 1
    assert "--standalone" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert _exists(control_plane, "role", fullname, "-n", kube_namespace)
    assert _exists(control_plane, "clusterrole", fullname)
    assert _exists(control_plane, "poddisruptionbudget", fullname, "-n", kube_namespace)
    assert _exists(control_plane, "service", f"{fullname}-metrics", "-n", kube_namespace)

    service = release(SERVICE_CHART)
    operator_user = f"system:serviceaccount:{kube_namespace}:{fullname}"
    service.install(
        "image.repository=registry.example/config-service",
        f"refreshAuth.serviceAccountToken.allowedUsers={{{operator_user}}}",
    )
    route = _get(control_plane, "configroute", service.fullname, "-n", kube_namespace)
    assert route["spec"]["podSync"]["port"] == 50051
    assert route["spec"]["refresh"]["auth"]["type"] == "serviceAccountToken"
    assert route["spec"]["refresh"]["tls"]["enabled"] is True
    assert route["spec"]["refresh"]["tls"]["serverName"] == f"{service.fullname}.{kube_namespace}.svc"
    # Secure by default: the chart made a CA and serving certificate, and the route trusts that CA.
    tls_secret = _get(control_plane, "secret", f"{service.fullname}-tls", "-n", kube_namespace)
    assert tls_secret["type"] == "kubernetes.io/tls"
    rendered_route = next(
        doc for doc in yaml.safe_load_all(service.manifest()) if doc and doc["kind"] == "ConfigRoute"
    )
    assert rendered_route["spec"]["refresh"]["tls"]["caBundle"] == tls_secret["data"]["ca.crt"]
    audience = rendered_route["spec"]["refresh"]["auth"]["audience"]
    assert audience == "configrefresh.io/config-refresh/config-service"
    binding = _get(control_plane, "clusterrolebinding", f"{service.fullname}-auth-delegator")
    assert binding["roleRef"]["name"] == "system:auth-delegator"
    # TokenReview wiring: the service's identity may review tokens, and accepts the operator's.
    service_api = _identity_client(control_plane, kube_namespace, service.fullname)
    assert _allowed(service_api, "create", "authentication.k8s.io", "tokenreviews", None)
    assert not _allowed(service_api, "get", "", "secrets", kube_namespace)
    operator_token = control_plane.issue_token(kube_namespace, fullname, audiences=[audience], create=False)
    spec = client.V1TokenReviewSpec(token=operator_token, audiences=[audience])
    review = client.AuthenticationV1Api(service_api).create_token_review(client.V1TokenReview(spec=spec))
    assert review.status is not None
    assert review.status.authenticated is True
    assert review.status.user is not None
    assert review.status.user.username == operator_user
    svc = _get(control_plane, "service", service.fullname, "-n", kube_namespace)
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {
        "grpc-refresh": 50051,
        "grpc-config": 50052,
        "metrics": 9102,
    }

    operator.upgrade("replicaCount=3", "refreshes.retentionKeep=20")
    deployment = _get(control_plane, "deployment", fullname, "-n", kube_namespace)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][container["args"].index("--peering") + 1] == fullname
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CONFIG_REFRESH_RETENTION_KEEP"] == "20"
    assert _exists(control_plane, "kopfpeering", fullname, "-n", kube_namespace)
    service.upgrade("replicaCount=4")
    assert _get(control_plane, "deployment", service.fullname, "-n", kube_namespace)["spec"]["replicas"] == 4
    kept = _get(control_plane, "secret", f"{service.fullname}-tls", "-n", kube_namespace)
    assert kept["data"] == tls_secret["data"], "an upgrade keeps the generated certificate (lookup)"

    service.uninstall()
    operator.uninstall()
    assert not _exists(control_plane, "deployment", fullname, "-n", kube_namespace)
    assert not _exists(control_plane, "clusterrole", fullname)
    assert not _exists(control_plane, "clusterrolebinding", fullname)
    assert not _exists(control_plane, "clusterrolebinding", f"{service.fullname}-auth-delegator")
    assert not _exists(control_plane, "configroute", service.fullname, "-n", kube_namespace)
    for name in crds:
        assert _exists(control_plane, "crd", name), "Helm keeps the CRDs (and every object of them)"


def test_the_chart_identity_may_do_what_the_operator_needs_and_nothing_else(
    control_plane: ControlPlane, kube_namespace: str, release: Callable[[Path], Release]
) -> None:
    operator = release(OPERATOR_CHART)
    operator.install(*_operator_sets())
    api = _identity_client(control_plane, kube_namespace, operator.fullname)

    missing = [
        (verb, group, resource)
        for verb, group, resource in NEEDED_IN_NAMESPACE
        if not _allowed(api, verb, group, resource, kube_namespace)
    ] + [
        (verb, group, resource)
        for verb, group, resource in NEEDED_CLUSTER_WIDE
        if not _allowed(api, verb, group, resource, None)
    ]
    assert missing == [], "the operator cannot do what it needs"
    excess = [
        (verb, group, resource)
        for verb, group, resource in FORBIDDEN_IN_NAMESPACE
        if _allowed(api, verb, group, resource, kube_namespace)
    ] + [
        (verb, group, resource)
        for verb, group, resource in FORBIDDEN_CLUSTER_WIDE
        if _allowed(api, verb, group, resource, None)
    ]
    assert excess == [], "the chart grants more than the operator uses"
    assert not _allowed(api, "create", "configrefresh.io", "configrefreshes", "default"), (
        "namespaced mode grants nothing outside the watched namespaces"
    )

    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as denied:
        core.list_namespaced_secret(kube_namespace)
    assert denied.value.status == 403
    with pytest.raises(ApiException) as denied:
        core.delete_namespaced_pod("anything", kube_namespace)
    assert denied.value.status == 403
    assert _list_refreshes(api, kube_namespace) == []


def test_cluster_wide_mode_reaches_every_namespace_but_still_no_secrets(
    control_plane: ControlPlane, kube_namespace: str, release: Callable[[Path], Release]
) -> None:
    operator = release(OPERATOR_CHART)
    operator.install(*_operator_sets("watch.clusterWide=true", "replicaCount=2"))
    assert not _exists(control_plane, "role", operator.fullname, "-n", kube_namespace)
    assert _exists(control_plane, "clusterkopfpeering", operator.fullname)
    api = _identity_client(control_plane, kube_namespace, operator.fullname)
    assert _allowed(api, "create", "configrefresh.io", "configrefreshes", "default")
    assert _allowed(api, "watch", "configrefresh.io", "configroutes", None)
    assert _allowed(api, "patch", "kopf.dev", "clusterkopfpeerings", None)
    assert not _allowed(api, "list", "", "namespaces", None), "kopf does not scan namespaces cluster-wide"
    assert not _allowed(api, "get", "", "secrets", "default")
    assert not _allowed(api, "delete", "", "pods", "default")
    operator.uninstall()
    assert not _exists(control_plane, "clusterkopfpeering", operator.fullname)


def test_the_operator_completes_the_full_path_under_the_chart_identity(
    control_plane: ControlPlane,
    kube_namespace: str,
    local_aws: LocalAws,
    release: Callable[[Path], Release],
    service_fleet: Callable[..., Any],
    operator_process: Callable[..., Any],
) -> None:
    """The operator, run locally with a token of the chart's ServiceAccount, carries a change end to end."""
    fleet = service_fleet(3, local_aws=local_aws)
    for instance in fleet:
        local_aws.register_instance(instance.instance_id, instance.host, instance.refresh_port)
    route = {
        "apiVersion": "configrefresh.io/v1alpha1",
        "kind": "ConfigRoute",
        "metadata": {"name": "services"},
        "spec": {
            "parameterPrefix": local_aws.prefix,
            "discovery": {
                "cloudMap": {"namespace": local_aws.namespace_name, "service": local_aws.service_name}
            },
            "refresh": {"timeoutSeconds": 2, "maxAttempts": 3, "deadlineSeconds": 60},
        },
    }
    control_plane.kubectl("apply", "-n", kube_namespace, "-f", "-", input=json.dumps(route))
    operator_release = release(OPERATOR_CHART)
    operator_release.install(*_operator_sets(queue_url=local_aws.queue_url))
    token = control_plane.issue_token(kube_namespace, operator_release.fullname, create=False)
    process = operator_process(
        KUBECONFIG=str(control_plane.kubeconfig_for_token(token)), CONFIG_REFRESH_POD_SYNC="true"
    )

    admin = control_plane.api_client()

    def route_ready() -> bool:
        body = cast(
            dict[str, Any],
            client.CustomObjectsApi(admin).get_namespaced_custom_object(
                "configrefresh.io", "v1alpha1", kube_namespace, "configroutes", "services"
            ),
        )
        conditions = (body.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    _wait(route_ready, "the route Ready (status written by the operator)")
    name = f"{local_aws.prefix}least-privilege/greeting"
    version = int(local_aws.client("ssm").put_parameter(Name=name, Value="hello", Type="String")["Version"])

    def finished() -> dict[str, Any] | None:
        for item in _list_refreshes(admin, kube_namespace):
            phase = (item.get("status") or {}).get("phase")
            if item["spec"]["parameter"]["name"] == name and phase in {
                "Succeeded",
                "PartiallyFailed",
                "Failed",
            }:
                return dict(item)
        return None

    rollout = _wait(finished, f"the rollout of {name}")
    assert rollout["status"]["phase"] == "Succeeded", rollout["status"]
    assert rollout["status"]["refreshed"] == 3
    assert [(e.value, int(e.version)) for e in (i.get_config(name) for i in fleet)] == [
        ("hello", version)
    ] * 3
    events = client.CoreV1Api(admin).list_namespaced_event(kube_namespace).items
    assert any(e.involved_object.kind == "ConfigRefresh" for e in events), "the operator posted Events"
    log = process.log_text()
    # A bare "403" also matches log timestamps (",403]") and hashes, so look for the shapes
    # an API permission error actually takes in kopf's and the kubernetes client's logs.
    for sign in ("Forbidden", "forbidden:", "'code': 403", "(403)", "Not enough permissions"):
        assert sign not in log, f"the operator hit a permission error: {sign!r}\n{process.log_tail()}"


def _paused(log: Path) -> bool | None:
    """Whether kopf's watch on ConfigRefreshes is paused by peering, from the last pause/resume line."""
    state: bool | None = None
    for line in log.read_text(errors="replace").splitlines():
        if "watch-stream for configrefreshes" not in line:
            continue
        if "Pausing the watch-stream" in line:
            state = True
        elif "Resuming the watch-stream" in line:
            state = False
    return state


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _list_refreshes(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    listed = cast(
        dict[str, Any],
        client.CustomObjectsApi(api).list_namespaced_custom_object(
            "configrefresh.io", "v1alpha1", namespace, "configrefreshes"
        ),
    )
    items: list[dict[str, Any]] = listed["items"]
    return items


def _wait(probe: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_two_replicas_peer_through_the_chart_peering_object_under_its_identity(
    control_plane: ControlPlane,
    kube_namespace: str,
    release: Callable[[Path], Release],
    operator_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """replicaCount=2: both replicas register in the chart's KopfPeering; the lower priority one stays
    paused until the other stops. Run as the chart's ServiceAccount, so the peering RBAC is what is tested.
    (kopf starts every watch paused until the peering is read, and logs each pause and resume.)"""
    operator_release = release(OPERATOR_CHART)
    operator_release.install(*_operator_sets("replicaCount=2"))
    peering = operator_release.fullname
    token = control_plane.issue_token(kube_namespace, operator_release.fullname, create=False)
    kubeconfig = str(control_plane.kubeconfig_for_token(token))
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    try:
        for identity, priority in (("replica-high", 200), ("replica-low", 100)):
            logs[identity] = tmp_path / f"{identity}.log"
            env = {
                **operator_env,
                "KUBECONFIG": kubeconfig,
                "POD_ID": identity,
                "CONFIG_REFRESH_METRICS_PORT": str(free_port()),
            }
            argv = [
                OPERATOR,
                "--peering",
                peering,
                "--priority",
                str(priority),
                "--namespace",
                kube_namespace,
            ]
            with logs[identity].open("wb") as log:
                processes[identity] = subprocess.Popen(
                    [*argv, "--verbose"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

        def peers() -> dict[str, Any]:
            body = _get(control_plane, "kopfpeering", peering, "-n", kube_namespace)
            status: dict[str, Any] = body.get("status") or {}
            return status if {"replica-high", "replica-low"} <= set(status) else {}

        status = _wait(peers, "both replicas in the peering object")
        assert (status["replica-high"]["priority"], status["replica-low"]["priority"]) == (200, 100)
        _wait(lambda: _paused(logs["replica-low"]) is True, "the low replica paused")
        _wait(lambda: _paused(logs["replica-high"]) is False, "the high replica working")
        assert _paused(logs["replica-low"]) is True, "only one replica works at a time"

        processes["replica-high"].terminate()
        processes["replica-high"].wait(60)
        _wait(lambda: _paused(logs["replica-low"]) is False, "the low replica to take over")
        for identity in logs:
            text = logs[identity].read_text()
            assert "Forbidden" not in text, f"{identity} hit a permission error:\n{text[-3000:]}"
    except BaseException:
        for identity, path in logs.items():
            kopf_lines = [line for line in path.read_text(errors="replace").splitlines() if "kopf" in line]
            tail = "\n".join(kopf_lines[-60:])
            print(f"----- {identity} log (kopf lines, tail)\n{tail}")
        raise
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(60)


def test_the_chart_certificate_serves_and_verifies_as_the_operator_will_dial_it(
    control_plane: ControlPlane,
    kube_namespace: str,
    release: Callable[[Path], Release],
    local_aws: LocalAws,
    service_fleet: FleetFactory,
    tmp_path: Path,
) -> None:
    """The chart's generated Secret, served by a real config-service process, verifies with the route's
    caBundle and serverName while the client dials an IP address (as the operator dials pod IPs)."""
    service = release(SERVICE_CHART)
    service.install("image.repository=registry.example/config-service")
    secret = _get(control_plane, "secret", f"{service.fullname}-tls", "-n", kube_namespace)["data"]
    route = next(
        doc for doc in yaml.safe_load_all(service.manifest()) if doc and doc["kind"] == "ConfigRoute"
    )["spec"]["refresh"]["tls"]
    for name in ("tls.crt", "tls.key"):
        (tmp_path / name).write_bytes(base64.b64decode(secret[name]))
    instance = service_fleet(
        1,
        local_aws=local_aws,
        env={
            "CONFIG_SERVICE_REFRESH_TLS_CERT_FILE": str(tmp_path / "tls.crt"),
            "CONFIG_SERVICE_REFRESH_TLS_KEY_FILE": str(tmp_path / "tls.key"),
        },
    )[0]
    trusted = grpc.ssl_channel_credentials(base64.b64decode(route["caBundle"]))
    options = [("grpc.ssl_target_name_override", route["serverName"])]
    with grpc.secure_channel(instance.refresh_address, trusted, options=options) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=20)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    # Another CA does not verify it.
    stranger = grpc.ssl_channel_credentials(trustme.CA().cert_pem.bytes())
    with (
        grpc.secure_channel(instance.refresh_address, stranger, options=options) as channel,
        pytest.raises(grpc.RpcError) as raised,
    ):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=20)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    service.uninstall()
