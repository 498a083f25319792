"""The images, built from the Dockerfile and run the way the charts run them (podman, no kubelet).

Both images are built with `hack/build-images.sh` (podman, the Debian-built base; layers cached). Both
charts are installed with `helm install` into the test namespace: their ServiceAccounts, RBAC, the
config-service's ConfigRoute and any Secret they render are real objects. Every container is then
started from the release's rendered Deployment (`helm get manifest`, the same text `helm template`
prints) by devstack.services.rendered_pods: user, groups, read-only root filesystem, no-new-privileges,
dropped capabilities, environment, arguments, limits, and every mount (emptyDir, Secrets, projected tokens
from the TokenRequest API, the automounted API credentials) come from there.

What is overridden, because there is no cluster network or IAM here, and nothing else:
- networking: `--network host`, so the containers reach the local stack and the API server on 127.0.0.1;
  each pod gets a loopback address of its own as pod IP, and the rendered "0.0.0.0" (bind addresses)
  becomes that address; the operator's metrics address (0.0.0.0 by default, not rendered) the same;
- endpoints: the local stack's URL, region, queue, prefix and Cloud Map names are chart values
  (aws.endpointUrl, aws.queueUrl, prefixes, configRoute.cloudMap), set as a user of a local stack would;
- credentials: the local stack's fake AWS keys stand in for IRSA (AWS_ACCESS_KEY_ID/SECRET_ACCESS_KEY);
- the image: the locally built one instead of the rendered registry path.
The kubelet's part is played by the test: Pod objects with the Deployment's labels, whose status gets
the pod IP and Ready once the container's rendered readiness probe answers.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack.aws.local_aws import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.services.readers import read_over_tls, release_ca
from devstack.services.rendered_pods import PODMAN, RenderedPod, find, load_manifests

ROOT = Path(__file__).resolve().parents[2]
TAG = "e2e"
OPERATOR_IMAGE = f"localhost/config-refresh-operator:{TAG}"
SERVICE_IMAGE = f"localhost/config-service:{TAG}"
INSTANCES = 3
WAIT = 120.0

pytestmark = pytest.mark.timeout(900)


def _fail_with(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def images() -> dict[str, float]:
    """Both images, built now from this tree (podman's layer cache makes a rebuild take seconds).

    Fails, never skips, when podman or the base image is missing: `make test` runs hack/container-env.sh
    first, which installs them."""
    env = {**os.environ, "CONTAINER_ENGINE": "podman"}
    started = time.monotonic()
    result = subprocess.run(
        ["hack/build-images.sh", TAG], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    _fail_with(result, "hack/build-images.sh (podman; run hack/container-env.sh as root once)")
    sizes = {}
    for image in (OPERATOR_IMAGE, SERVICE_IMAGE):
        out = subprocess.run(
            [*PODMAN, "image", "inspect", "--format", "{{.Size}}", image], capture_output=True, text=True
        )
        _fail_with(out, f"podman image inspect {image}")
        sizes[image] = int(out.stdout.strip()) / 1e6
    print(f"\nimages built in {time.monotonic() - started:.0f} s; sizes MB: {sizes}")
    return sizes


# What must not be in a shipped image, checked from inside it with the image's own interpreter.
_CONTENTS_CHECK = r"""
import importlib.util, os, shutil, sys, sysconfig
found = []
for tool in ("gcc", "cc", "c++", "g++", "clang", "make", "ld", "as", "git", "pip", "pip3"):
    if shutil.which(tool):
        found.append("tool " + tool)
for module in ("pip", "setuptools", "wheel", "pytest", "moto", "grpc_tools", "mypy", "matplotlib", "_pytest"):
    if importlib.util.find_spec(module) is not None:
        found.append("module " + module)
for place in ("/root/.cache", "/tmp/.cache", "/src", "/opt/venv/src"):
    if os.path.exists(place):
        found.append("path " + place)
for top in ("/opt", "/usr/local", "/tmp", "/app", "/"):
    for directory, dirs, files in os.walk(top):
        if directory.startswith(("/proc", "/sys", "/dev", "/usr/share", "/usr/lib/python3")):
            dirs[:] = []
            continue
        for name in dirs:
            if name in (".git", "tests", "test") or name == "pip" and "cache" in directory:
                found.append("dir " + os.path.join(directory, name))
        if top == "/":
            dirs[:] = [d for d in dirs if d in ("root", "home", "srv", "var")]
# The operator chart's peering command (replicaCount > 1) runs these.
for tool in ("sh", "od", "tr"):
    if not shutil.which(tool):
        found.append("missing " + tool)
import boto3
for service in ("ssm", "sqs", "servicediscovery", "sts"):
    boto3.client(service, region_name="us-east-1")
print("\n".join(found) if found else "clean")
"""


@pytest.mark.parametrize("image", [OPERATOR_IMAGE, SERVICE_IMAGE])
def test_the_image_holds_no_compiler_pip_cache_tests_or_git(images: dict[str, float], image: str) -> None:
    """Nothing of the build in the image; the AWS clients the code makes (with the pruned botocore
    models) still load, and the tools the operator chart's peering command uses are there."""
    run = [*PODMAN, "run", "--rm", "--no-healthcheck", "--read-only", "--network", "none"]
    run += ["--entrypoint", "python", image]
    result = subprocess.run(
        [*run, "-c", _CONTENTS_CHECK],
        capture_output=True,
        text=True,
        check=False,
    )
    _fail_with(result, f"the contents check in {image}")
    assert result.stdout.strip() == "clean", result.stdout


# ----- the whole path --------------------------------------------------------------------------------


def _ports_free(host: str, ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


def _pod_ips(count: int, ports: list[int]) -> list[str]:
    """`count` loopback addresses on which all `ports` are free (a block no other test uses)."""
    for _ in range(50):
        block = f"127.{random.randrange(100, 200)}.{random.randrange(0, 250)}"
        hosts = [f"{block}.{10 + i}" for i in range(count)]
        if all(_ports_free(host, ports) for host in hosts):
            return hosts
    raise AssertionError("no loopback block with the charts' ports free")


def _wait(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Cluster:
    """kubectl and helm on the test namespace."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace

    def get(self, *args: str) -> Any:
        return json.loads(self.plane.kubectl("get", *args, "-n", self.namespace, "-o", "json").stdout)

    def lookup(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.plane.kubectl("get", kind, name, "-n", self.namespace, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def install(self, release: str, chart: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        """`helm install` with `values`; returns the release's rendered objects."""
        self.plane.helm(
            "install",
            release,
            str(ROOT / "charts" / chart),
            "-n",
            self.namespace,
            *[arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")],
        )
        manifest = self.plane.helm("get", "manifest", release, "-n", self.namespace).stdout
        return load_manifests(str(manifest))

    def uninstall(self, release: str) -> None:
        self.plane.helm("uninstall", release, "-n", self.namespace, check=False)

    def pod_appears(self, pod: RenderedPod) -> None:
        """What the kubelet and scheduler would record: a Pod with the template's labels, then its IP."""
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod.pod_name, "labels": pod.labels},
            "spec": {
                "nodeName": "node-e2e",
                "serviceAccountName": pod.pod_spec.get("serviceAccountName", "default"),
                "containers": [{"name": pod.container["name"], "image": pod.image}],
            },
        }
        self.plane.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(manifest))

    def pod_ready(self, pod: RenderedPod, ready: bool) -> None:
        status = {
            "status": {
                "phase": "Running",
                "podIP": pod.pod_ip,
                "podIPs": [{"ip": pod.pod_ip}],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "lastTransitionTime": "2026-11-26T10:00:00Z",
                    }
                ],
            }
        }
        self.plane.kubectl(
            "patch",
            "pod",
            pod.pod_name,
            "-n",
            self.namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(status),
        )


@pytest.fixture
def pods() -> Iterator[list[RenderedPod]]:
    """The containers a test starts; removed at its end."""
    started: list[RenderedPod] = []
    yield started
    for pod in started:
        pod.remove()


def _log_tails(pods: list[RenderedPod]) -> str:
    """The containers' logs, without the lines every probe and timer adds, last 6,000 characters each."""

    def tail(pod: RenderedPod) -> str:
        lines = [line for line in pod.logs().splitlines() if "aiohttp.access" not in line]
        lines = [line for line in lines if not ("Timer '" in line and "succeeded" in line)]
        return "\n".join(lines)[-6000:]

    return "\n".join(f"----- {pod.pod_name} log tail -----\n{tail(pod)}" for pod in pods)


def test_the_images_carry_a_change_to_every_instance_as_the_charts_run_them_and_stop_cleanly(
    images: dict[str, float],
    control_plane: ControlPlane,
    local_aws: LocalAws,
    kube_namespace: str,
    pods: list[RenderedPod],
    tmp_path: Path,
) -> None:
    cluster = Cluster(control_plane, kube_namespace)
    suffix = uuid.uuid4().hex[:6]
    operator_release, service_release = f"op{suffix}", f"svc{suffix}"
    operator_objects = cluster.install(
        operator_release,
        "config-refresh-operator",
        {
            "aws.queueUrl": local_aws.queue_url,
            "aws.endpointUrl": local_aws.endpoint_url,
            "aws.region": local_aws.region,
            # Routing is closed by default: the admin grants this namespace the local stack's prefix.
            "routing.allowedPrefixes": {kube_namespace: [local_aws.prefix]},
        },
    )
    operator_deployment = find(operator_objects, "Deployment")
    operator_account = operator_deployment["spec"]["template"]["spec"]["serviceAccountName"]
    service_objects = cluster.install(
        service_release,
        "config-service",
        {
            "replicaCount": INSTANCES,
            "prefixes": [local_aws.prefix],
            "aws.endpointUrl": local_aws.endpoint_url,
            "aws.region": local_aws.region,
            "configRoute.cloudMap.namespace": local_aws.namespace_name,
            "configRoute.cloudMap.service": local_aws.service_name,
            # The operator's identity in this namespace (the default names namespace config-refresh).
            "refreshAuth.serviceAccountToken.allowedUsers": [
                f"system:serviceaccount:{kube_namespace}:{operator_account}"
            ],
        },
    )
    try:
        _run_the_path(
            cluster,
            local_aws,
            operator_objects,
            service_objects,
            pods,
            tmp_path,
            images,
        )
    except (AssertionError, pytest.fail.Exception) as failure:
        pytest.fail(f"{failure}\n{_log_tails(pods)}", pytrace=True)
    finally:
        cluster.uninstall(service_release)
        cluster.uninstall(operator_release)


def _pod(
    cluster: Cluster,
    objects: list[dict[str, Any]],
    *,
    image: str,
    pod_ip: str,
    workdir: Path,
    env_overrides: dict[str, str],
) -> RenderedPod:
    deployment = find(objects, "Deployment")
    account = deployment["spec"]["template"]["spec"].get("serviceAccountName", "default")
    plane = cluster.plane

    def issue(audience: str | None, seconds: int) -> str:
        audiences = [audience] if audience else []
        return plane.issue_token(cluster.namespace, account, audiences, max(seconds, 600), create=False)

    return RenderedPod(
        deployment=deployment,
        objects=objects,
        namespace=cluster.namespace,
        pod_name=f"{deployment['metadata']['name']}-{uuid.uuid4().hex[:5]}",
        pod_ip=pod_ip,
        image=image,
        workdir=workdir,
        issue_token=issue,
        api_server=("127.0.0.1", plane.apiserver_port),
        api_ca=plane.pki.ca_cert,
        cluster_lookup=cluster.lookup,
        env_overrides=env_overrides,
    )


# Seen from inside a running container: who it runs as, what it can write, what capabilities it holds.
_INSIDE = r"""
import json, os
def writable(path):
    try:
        with open(os.path.join(path, ".probe"), "w"):
            pass
        os.unlink(os.path.join(path, ".probe"))
        return True
    except OSError:
        return False
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
    "root_options": [m.split()[3].split(",") for m in open("/proc/self/mounts") if m.split()[1] == "/"],
    "tmp_writable": writable("/tmp"),
    "cap_eff": int(status["CapEff"], 16), "no_new_privs": status.get("NoNewPrivs", "").strip(),
    "home": os.environ.get("HOME"),
}))
"""


def _runs_as_rendered(pod: RenderedPod) -> None:
    seen = json.loads(pod.exec("python", "-c", _INSIDE))
    pod_sc = pod.pod_spec.get("securityContext") or {}
    sc = {**pod_sc, **(pod.container.get("securityContext") or {})}
    assert seen["uid"] == sc["runAsUser"] != 0, seen
    assert seen["gid"] == sc["runAsGroup"], seen
    assert pod_sc["fsGroup"] in seen["groups"], seen
    assert seen["root_options"], seen
    assert all("ro" in options for options in seen["root_options"]), "the root filesystem is read-only"
    assert seen["tmp_writable"], "the emptyDir on /tmp is writable"
    assert seen["cap_eff"] == 0, "every capability dropped"
    assert seen["no_new_privs"] == "1", "allowPrivilegeEscalation: false"
    assert seen["home"] == "/tmp", "HOME is the writable scratch directory"


def _run_the_path(
    cluster: Cluster,
    local_aws: LocalAws,
    operator_objects: list[dict[str, Any]],
    service_objects: list[dict[str, Any]],
    pods: list[RenderedPod],
    tmp_path: Path,
    images: dict[str, float],
) -> None:
    # Local stack credentials in place of IRSA: the only environment added to what the charts render.
    aws_keys = {"AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY}
    container_ports = [
        int(p["containerPort"])
        for objects in (operator_objects, service_objects)
        for p in find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0].get("ports", [])
    ]
    ips = _pod_ips(INSTANCES + 1, container_ports)
    workdir = tmp_path / "pods"
    services = [
        _pod(
            cluster, service_objects, image=SERVICE_IMAGE, pod_ip=ip, workdir=workdir, env_overrides=aws_keys
        )
        for ip in ips[:INSTANCES]
    ]
    operator = _pod(
        cluster,
        operator_objects,
        image=OPERATOR_IMAGE,
        pod_ip=ips[INSTANCES],
        workdir=workdir,
        # the operator binds its metrics server to 0.0.0.0 unless told: the pod IP, as the rule above
        env_overrides={**aws_keys, "CONFIG_REFRESH_METRICS_ADDRESS": ips[INSTANCES]},
    )

    # The config-service instances: Pod objects, containers, Ready once the rendered readiness probe
    # (gRPC health on the config port) answers SERVING, which is what the kubelet would report.
    for pod in services:
        cluster.pod_appears(pod)
        pods.append(pod)
        pod.start()
    service_start = [pod.wait_probe("readinessProbe", WAIT) for pod in services]
    for pod in services:
        assert pod.probe("livenessProbe"), f"{pod.pod_name}: the rendered liveness probe fails"
        cluster.pod_ready(pod, True)

    pods.append(operator)
    operator.start()
    operator_start = operator.wait_probe("livenessProbe", WAIT)
    for pod in [*services, operator]:
        _runs_as_rendered(pod)
    assert operator.probe("readinessProbe")
    print(
        f"\ncold start-up (podman run → probe answers): operator {operator_start:.1f} s, "
        f"config-service {', '.join(f'{s:.1f}' for s in service_start)} s; image sizes MB {images}"
    )

    # podSync registers the Ready pods in Cloud Map from the chart's route (attribute k8s-pod: the pod).
    cloudmap = local_aws.client("servicediscovery")
    wanted = {pod.pod_name for pod in services}

    def registered() -> bool:
        found = cloudmap.discover_instances(
            NamespaceName=local_aws.namespace_name, ServiceName=local_aws.service_name, HealthStatus="HEALTHY"
        )
        return {i["Attributes"].get("k8s-pod") for i in found["Instances"]} == wanted

    try:
        _wait("podSync to register the 3 Ready pods in Cloud Map", registered)
    except pytest.fail.Exception as failure:
        found = cloudmap.list_instances(ServiceId=local_aws.service_id)["Instances"]
        routes = [item.get("status") for item in cluster.get("configroutes")["items"]]
        pytest.fail(f"{failure}\nCloud Map holds {found}\nroute status {routes}")

    name = f"{local_aws.prefix}images/greeting"
    version = int(
        local_aws.client("ssm").put_parameter(
            Name=name, Value="from-a-container", Type="String", Overwrite=True
        )["Version"]
    )

    def finished() -> dict[str, Any] | None:
        for item in cluster.get("configrefreshes")["items"]:
            if item["spec"]["parameter"]["name"] == name and (item.get("status") or {}).get("phase") in {
                "Succeeded",
                "PartiallyFailed",
                "Failed",
            }:
                return dict(item)
        return None

    rollout = _wait(f"the rollout of {name} v{version}", finished)
    status = rollout["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["targets"], status["refreshed"], status["failed"]) == (INSTANCES, INSTANCES, 0), status
    # An application reads as the chart admits it: over TLS (the chart's CA, the route's server name) with
    # a ServiceAccount token of the release namespace for the service's audience.
    config_port = services[0].port("config")
    refresh = find(service_objects, "ConfigRoute")["spec"]["refresh"]
    ca_pem = release_ca(service_objects)
    token = cluster.plane.issue_token(
        cluster.namespace, "images-reader", audiences=[refresh["auth"]["audience"]]
    )
    for pod in services:
        served = read_over_tls(
            f"{pod.pod_ip}:{config_port}",
            name,
            ca_pem=ca_pem,
            server_name=refresh["tls"]["serverName"],
            token=token,
            timeout=5,
        )
        assert served == ("from-a-container", version), pod.pod_name
    assert operator.probe("livenessProbe"), "the operator's liveness endpoint answers after the rollout"
    # What a read-only root, a non-root user or the chart's RBAC would break shows as EROFS, EACCES or 403.
    # (Not any traceback: kopf logs transient API errors of a busy test API server with one, and retries.)
    log = operator.logs()
    for sign in ("Forbidden", "Read-only file system", "Permission denied"):
        assert sign not in log, f"the operator log shows {sign!r}:\n{log[-4000:]}"
    for pod in services:
        for sign in ("Read-only file system", "Permission denied"):
            assert sign not in pod.logs(), f"{pod.pod_name} log shows {sign!r}:\n{pod.logs()[-4000:]}"

    # SIGTERM (podman stop with the pod's grace period, as the kubelet): every container drains and exits 0
    # before the grace period ends (a SIGKILL would show as 137).
    with ThreadPoolExecutor(len(pods)) as pool:
        stopped = list(pool.map(lambda pod: pod.stop(), pods))
    print(
        "SIGTERM → exit: "
        + ", ".join(
            f"{pod.pod_name} {code} in {s:.1f} s" for pod, (code, s) in zip(pods, stopped, strict=True)
        )
    )
    for pod, (code, seconds) in zip(pods, stopped, strict=True):
        assert code == 0, f"{pod.pod_name} exited {code} after SIGTERM:\n{pod.logs()[-4000:]}"
        assert seconds < pod.grace_seconds, f"{pod.pod_name} took {seconds:.1f} s of {pod.grace_seconds}"
    for pod in services:
        text = pod.logs()
        assert "shutting down" in text, f"{pod.pod_name} did not drain:\n{text[-3000:]}"
        assert "stopped" in text, f"{pod.pod_name} did not finish draining:\n{text[-3000:]}"


def test_two_operator_replicas_run_the_chart_peering_command_and_one_of_them_leads(
    images: dict[str, float],
    control_plane: ControlPlane,
    local_aws: LocalAws,
    kube_namespace: str,
    pods: list[RenderedPod],
    tmp_path: Path,
) -> None:
    """replicaCount=2 renders a `/bin/sh -c 'exec config-refresh-operator ... --priority $(od ...)'`
    command: it must work in the image under the read-only root, and the two replicas (random
    priorities) must settle on one active operator through the chart's KopfPeering."""
    cluster = Cluster(control_plane, kube_namespace)
    release = f"peer{uuid.uuid4().hex[:6]}"
    objects = cluster.install(
        release,
        "config-refresh-operator",
        {
            "replicaCount": 2,
            # kopf logs the pause and resume of each watch only at debug level: the evidence of who leads.
            "extraArgs": ["--verbose"],
            "aws.queueUrl": local_aws.queue_url,
            "aws.endpointUrl": local_aws.endpoint_url,
            "aws.region": local_aws.region,
        },
    )
    try:
        command = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[:2] == ["/bin/sh", "-c"], "the peering mode's command is what this test is about"
        ports = [
            int(p["containerPort"])
            for p in find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]
        ]
        aws_keys = {"AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY}
        for ip in _pod_ips(2, ports):
            pod = _pod(
                cluster,
                objects,
                image=OPERATOR_IMAGE,
                pod_ip=ip,
                workdir=tmp_path / "pods",
                env_overrides={**aws_keys, "CONFIG_REFRESH_METRICS_ADDRESS": ip},
            )
            pods.append(pod)
            pod.start()
        for pod in pods:
            pod.wait_probe("livenessProbe", WAIT)
            _runs_as_rendered(pod)

        peering = find(objects, "KopfPeering")["metadata"]["name"]

        def peers() -> dict[str, Any]:
            # kopf's identity is POD_ID (the rendered fieldRef: the pod name), with the drawn priority.
            status: dict[str, Any] = cluster.get("kopfpeering", peering).get("status") or {}
            return status if {pod.pod_name for pod in pods} <= set(status) else {}

        status = _wait("both replicas in the chart's KopfPeering", peers)
        priorities = {pod.pod_name: int(status[pod.pod_name]["priority"]) for pod in pods}
        assert len(set(priorities.values())) == 2, f"the drawn priorities collide: {priorities}"
        low = min(pods, key=lambda pod: priorities[pod.pod_name])
        high = max(pods, key=lambda pod: priorities[pod.pod_name])
        _wait("the lower priority replica paused", lambda: _paused(low.logs()) is True)
        _wait("the higher priority replica working", lambda: _paused(high.logs()) is False)
        assert _paused(low.logs()) is True, "only one replica works at a time"
        with ThreadPoolExecutor(len(pods)) as pool:
            stopped = list(pool.map(lambda pod: pod.stop(), pods))
        assert [code for code, _ in stopped] == [0, 0], _log_tails(pods)
    except (AssertionError, pytest.fail.Exception) as failure:
        pytest.fail(f"{failure}\n{_log_tails(pods)}", pytrace=True)
    finally:
        cluster.uninstall(release)


def _paused(log: str) -> bool | None:
    """Whether kopf's watch on ConfigRefreshes is paused by peering, from the last pause/resume line."""
    state: bool | None = None
    for line in log.splitlines():
        if "watch-stream for configrefreshes" not in line:
            continue
        if "Pausing the watch-stream" in line:
            state = True
        elif "Resuming the watch-stream" in line:
            state = False
    return state
