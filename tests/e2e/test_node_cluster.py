"""Both charts on a real one-node cluster: `helm install`, pods that run and become Ready, a rollout.

The cluster is devstack.node's (kube-apiserver, etcd, kube-controller-manager, kube-scheduler, a kubelet
with containerd and runc, the CNI bridge); the images are the Dockerfile's, built with podman and imported
into the node's containerd; the local AWS stack listens on the node's bridge address so that pods reach
it. Nothing plays the kubelet's part here: the Deployments' pods are scheduled, started, probed and
reported Ready by Kubernetes itself, their ServiceAccount tokens are projected by the kubelet, and the
operator finds the config-service pods through podSync and Cloud Map as it would on EKS.

What stands in for AWS and EKS: moto for the AWS APIs, fake keys (extraEnv) for IRSA, and the images'
local names with `pullPolicy: Never` for a registry. Slow (image build, cluster start): `make soak`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.controlplane_procs import ControlPlaneError
from devstack.local_aws import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, LocalAws
from devstack.node import BRIDGE_IP, Node

ROOT = Path(__file__).resolve().parents[2]
TAG = "node-e2e"
OPERATOR_IMAGE = f"localhost/config-refresh-operator:{TAG}"
SERVICE_IMAGE = f"localhost/config-service:{TAG}"
CONFIGCTL = str(Path(sys.executable).parent / "configctl")
INSTANCES = 3
WAIT = 300.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _wait(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    """The one-node cluster, with both images built from this tree and imported into its containerd."""
    env = {**os.environ, "CONTAINER_ENGINE": "podman"}
    built = subprocess.run(
        ["hack/build-images.sh", TAG], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, (
        f"hack/build-images.sh failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    )
    try:
        cluster = Node.start()
    except ControlPlaneError as exc:
        pytest.fail(f"the one-node cluster did not start: {exc}", pytrace=False)
    try:
        for image in (OPERATOR_IMAGE, SERVICE_IMAGE):
            cluster.load_image(image)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def bridge_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAws]:
    """The local AWS stack on the node's bridge address, where pods reach it."""
    stack = LocalAws.start(host=BRIDGE_IP, log_path=tmp_path_factory.mktemp("aws") / "moto.log")
    try:
        yield stack
    finally:
        stack.stop()


class Release:
    """kubectl and helm against the node's API server, in one namespace."""

    def __init__(self, node: Node, namespace: str) -> None:
        self.plane = node.plane
        self.namespace = namespace

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, "-n", self.namespace, check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def install(self, release: str, chart: str, values: dict[str, Any]) -> None:
        self.plane.helm(
            "install",
            release,
            str(ROOT / "charts" / chart),
            "-n",
            self.namespace,
            *[arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")],
        )

    def ready_pods(self, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("pods", "-l", selector)["items"]
        return [
            pod
            for pod in items
            if not pod["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod.get("status", {}).get("conditions", [])
            )
        ]

    def describe(self) -> str:
        pods = self.kubectl("get", "pods", "-o", "wide", check=False).stdout
        events = self.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False).stdout
        return f"pods:\n{pods}\nevents:\n{events[-6000:]}"

    def logs(self, selector: str) -> str:
        out = self.kubectl("logs", "-l", selector, "--tail=60", "--prefix", check=False)
        return (out.stdout + out.stderr)[-6000:]


def _configctl(aws: LocalAws, node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONFIG_REFRESH_"))}
    env.update({k: v for k, v in aws.env().items() if k.startswith("AWS_")})
    env["KUBECONFIG"] = str(node.plane.kubeconfig)
    return subprocess.run(
        [CONFIGCTL, *args], env=env, capture_output=True, text=True, timeout=420, check=False
    )


def test_helm_install_runs_ready_pods_and_configctl_apply_wait_reaches_every_pod(
    node: Node, bridge_aws: LocalAws, tmp_path: Path
) -> None:
    namespace = f"node-{uuid.uuid4().hex[:6]}"
    node.plane.create_namespace(namespace)
    node.plane.apply_crds()
    release = Release(node, namespace)
    aws_keys = [
        {"name": "AWS_ACCESS_KEY_ID", "value": FAKE_ACCESS_KEY_ID},
        {"name": "AWS_SECRET_ACCESS_KEY", "value": FAKE_SECRET_ACCESS_KEY},
    ]
    started = time.monotonic()
    release.install(
        "operator",
        "config-refresh-operator",
        {
            "image.repository": OPERATOR_IMAGE.rsplit(":", 1)[0],
            "image.tag": TAG,
            "image.pullPolicy": "Never",
            "aws.queueUrl": bridge_aws.queue_url,
            "aws.endpointUrl": bridge_aws.endpoint_url,
            "aws.region": bridge_aws.region,
            "routing.allowedPrefixes": {namespace: [bridge_aws.prefix]},
            "extraEnv": aws_keys,
        },
    )
    operator_account = release.get("deployment", "-l", "app.kubernetes.io/instance=operator")["items"][0][
        "spec"
    ]["template"]["spec"]["serviceAccountName"]
    release.install(
        "svc",
        "config-service",
        {
            "image.repository": SERVICE_IMAGE.rsplit(":", 1)[0],
            "image.tag": TAG,
            "image.pullPolicy": "Never",
            "replicaCount": INSTANCES,
            "prefixes": [bridge_aws.prefix],
            "aws.endpointUrl": bridge_aws.endpoint_url,
            "aws.region": bridge_aws.region,
            "configRoute.cloudMap.namespace": bridge_aws.namespace_name,
            "configRoute.cloudMap.service": bridge_aws.service_name,
            "refreshAuth.serviceAccountToken.allowedUsers": [
                f"system:serviceaccount:{namespace}:{operator_account}"
            ],
            "extraEnv": aws_keys,
        },
    )
    operator_pods = "app.kubernetes.io/instance=operator"
    service_pods = "app.kubernetes.io/instance=svc"
    try:
        _wait("the operator pod Ready", lambda: len(release.ready_pods(operator_pods)) == 1)
        _wait(
            f"{INSTANCES} config-service pods Ready",
            lambda: len(release.ready_pods(service_pods)) == INSTANCES,
        )
    except pytest.fail.Exception as failure:
        pytest.fail(
            f"{failure}\n{release.describe()}\noperator:\n{release.logs(operator_pods)}\n"
            f"config-service:\n{release.logs(service_pods)}"
        )
    took = time.monotonic() - started
    print(f"\nhelm install → operator and {INSTANCES} config-service pods Ready: {took:.1f} s")
    pod_ips = {pod["status"]["podIP"] for pod in release.ready_pods(service_pods)}
    assert all(ip.startswith("10.85.0.") for ip in pod_ips), pod_ips

    # podSync registers the Ready pods (their real IPs on the bridge) in Cloud Map.
    cloudmap = bridge_aws.client("servicediscovery")

    def registered() -> set[str]:
        found = cloudmap.discover_instances(
            NamespaceName=bridge_aws.namespace_name,
            ServiceName=bridge_aws.service_name,
            HealthStatus="HEALTHY",
        )
        ips = {i["Attributes"].get("AWS_INSTANCE_IPV4") for i in found["Instances"]}
        return ips if ips == pod_ips else set()

    try:
        _wait("podSync to register the Ready pods in Cloud Map", registered)
    except pytest.fail.Exception as failure:
        pytest.fail(f"{failure}\noperator:\n{release.logs(operator_pods)}")

    tree = tmp_path / "tree"
    (tree / "acme").mkdir(parents=True)
    (tree / "acme" / "orders.yaml").write_text("greeting: from-a-real-node\n")
    applied = _configctl(
        bridge_aws,
        node,
        "apply",
        str(tree),
        "--prefix",
        bridge_aws.prefix,
        "--wait",
        "--timeout",
        "4m",
        "--namespace",
        namespace,
    )
    assert applied.returncode == 0, (
        f"configctl apply --wait failed ({applied.returncode}):\n{applied.stdout}\n{applied.stderr}\n"
        f"operator:\n{release.logs(operator_pods)}"
    )
    name = f"{bridge_aws.prefix}acme/orders/greeting"
    rollouts = [r for r in release.get("configrefreshes")["items"] if r["spec"]["parameter"]["name"] == name]
    assert rollouts, f"no ConfigRefresh for {name}: {applied.stdout}"
    status = rollouts[-1]["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["targets"], status["refreshed"], status["failed"]) == (INSTANCES, INSTANCES, 0), status
    reached = {instance["address"].rsplit(":", 1)[0] for instance in status.get("instances", [])}
    assert reached == pod_ips, f"the rollout reached {reached}, the Ready pods are {pod_ips}"
