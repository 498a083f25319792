"""The whole local stack in one object, shared by `make demo`, `make demo-up` and the benchmarks.

Why one builder: the demo, its test and the whole-path benchmarks must exercise the same path a user
runs, not three hand-assembled variants. `DemoStack.start()` brings up, in this order: the control plane
(kube-apiserver + etcd, built once and cached), the local AWS stack (moto with the change emitter), N real
`config-service` processes on 127.0.0.(10+i) that all listen on one refresh port (as a pod template's
container port would), a namespace with the CRDs, a ConfigRoute with `spec.podSync`, the operator as it
ships (`config-refresh-operator --standalone`), and one Pod object per instance whose status is Ready
and whose podIP is the instance's address. It returns once podSync has put every instance in Cloud Map
as HEALTHY and the route is Ready.

`detach=True` (for `demo-up`) starts every process in its own session and without parent watches, so
the stack outlives this Python process; `describe()` gives what `stop_described()` needs to stop it
again from another process (the `demo-down` state file). Every pid is checked against its command line
before it is signalled, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from configrefresh_api.groupversion import API_VERSION, REFRESHES, ROUTE_KIND
from devstack import controlplane_build
from devstack.controlplane import ControlPlane
from devstack.controlplane_procs import stop_pid
from devstack.local_aws import LocalAws
from devstack.services import ServiceFleet
from refresh_operator.podsync.model import instance_id_for

APP_LABEL = "config-service"
ROUTE_NAME = "config-service"
OPERATOR_READY_MARK = "ConfigRoute(s)"
Say = Callable[[str], None]


class StackError(RuntimeError):
    """A part of the stack did not start or did not become ready; the message says which and why."""


def _quiet(_: str) -> None:
    return None


def operator_executable() -> Path:
    """The `config-refresh-operator` console script of this interpreter's environment."""
    return Path(sys.executable).parent / "config-refresh-operator"


def port_free_on_every(hosts: Sequence[str], *, taken: Collection[int] = ()) -> int:
    """A port free on each host right now and not in `taken` (ports already promised to instances)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = int(probe.getsockname()[1])
        if port in taken:
            continue
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise StackError(f"no port free on all {len(hosts)} instance addresses")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def route_manifest(*, aws: LocalAws, port: int, name: str = ROUTE_NAME) -> dict[str, Any]:
    """The ConfigRoute: every parameter under the stack's prefix goes to the pods labelled app=APP_LABEL."""
    return {
        "apiVersion": API_VERSION,
        "kind": ROUTE_KIND,
        "metadata": {"name": name},
        "spec": {
            "parameterPrefix": aws.prefix,
            "discovery": {"cloudMap": {"namespace": aws.namespace_name, "service": aws.service_name}},
            "refresh": {"port": port, "timeoutSeconds": 2, "maxAttempts": 3, "deadlineSeconds": 60},
            "podSync": {"selector": {"matchLabels": {"app": APP_LABEL}}, "port": port},
        },
    }


OPERATOR_IMAGE_ENV = {"MALLOC_ARENA_MAX": "2"}
"""What the operator image sets for the process besides the operator's own settings (Dockerfile, operator
stage), so a local operator's memory is the deployed one's: glibc gives each thread that allocates its
own arena by default (up to 8 per core), and the blocking pool's threads left freed memory spread
across them."""


def operator_environment(
    plane: ControlPlane, aws: LocalAws, extra: dict[str, str], *, namespace: str
) -> dict[str, str]:
    """The operator's environment: admin kubeconfig, the local AWS endpoint and queue, a free metrics port,
    and, as a cluster admin grants it, the stack's prefix for routes in `namespace` (and nothing else)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONFIG_REFRESH_", "AWS_"))}
    env.update(aws.env())
    env.update(
        {
            "KUBECONFIG": str(plane.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            **OPERATOR_IMAGE_ENV,
            "CONFIG_REFRESH_QUEUE_URL": aws.queue_url,
            "CONFIG_REFRESH_AWS_ENDPOINT_URL": aws.endpoint_url,
            "CONFIG_REFRESH_METRICS_ADDRESS": "127.0.0.1",
            "CONFIG_REFRESH_METRICS_PORT": str(free_port()),
            "CONFIG_REFRESH_POD_SYNC": "true",
            "CONFIG_REFRESH_ALLOWED_PREFIXES": json.dumps({namespace: [aws.prefix]}),
            **extra,
        }
    )
    return env


def launch_operator(
    *, env: dict[str, str], namespace: str, log_path: Path, timeout: float = 90.0
) -> subprocess.Popen[bytes]:
    """Start the operator as it ships, in its own session; return once it has indexed the routes."""
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(operator_executable()), "--standalone", "--namespace", namespace],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_bytes()[offset:].decode("utf-8", "replace")
        if process.poll() is not None:
            stop_process(process)
            raise StackError(f"the operator exited with {process.returncode}:\n{text[-4000:]}")
        if OPERATOR_READY_MARK in text:
            return process
        time.sleep(0.1)
    stop_process(process)
    raise StackError(f"the operator was not ready after {timeout:.0f} s:\n{text[-4000:]}")


def stop_process(process: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    """SIGTERM, SIGKILL after `grace` s (a clean operator stop waits out a 20 s long poll)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class DemoStack:
    """A running control plane, local AWS, fleet, route, pods and operator (see the module docstring)."""

    def __init__(
        self,
        *,
        plane: ControlPlane,
        aws: LocalAws,
        fleet: ServiceFleet,
        namespace: str,
        port: int,
        workdir: Path,
        operator_env: dict[str, str],
    ) -> None:
        self.plane = plane
        self.aws = aws
        self.fleet = fleet
        self.namespace = namespace
        self.port = port
        self.workdir = workdir
        self.operator_env = operator_env
        self.operator_log = workdir / "operator.log"
        self.operator: subprocess.Popen[bytes] | None = None

    # ----- building -------------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        *,
        instances: int,
        workdir: Path | None = None,
        namespace: str = "demo",
        detach: bool = False,
        service_args: Sequence[str] = (),
        operator_env: dict[str, str] | None = None,
        say: Say = _quiet,
    ) -> DemoStack:
        """Bring the whole stack up (see the module docstring); on any failure, stop what was started."""
        if instances < 1:
            raise StackError("instances must be at least 1")
        workdir = workdir or Path(tempfile.mkdtemp(prefix="config-refresh-demo-"))
        workdir.mkdir(parents=True, exist_ok=True)
        bins = controlplane_build.ensure_built(quiet=True)
        started = time.monotonic()
        plane = ControlPlane.start(binaries=bins, detached=detach)
        say(f"control plane   {plane.server}  ({time.monotonic() - started:.1f} s)")
        aws: LocalAws | None = None
        fleet: ServiceFleet | None = None
        stack: DemoStack | None = None
        try:
            started = time.monotonic()
            aws = LocalAws.start(log_path=workdir / "local-aws.log", detach=detach)
            say(f"local AWS       {aws.endpoint_url}  queue {aws.queue_url.rsplit('/', 1)[-1]}")
            started = time.monotonic()
            fleet = ServiceFleet(instances, local_aws=aws, workdir=workdir / "fleet", extra_args=service_args)
            promised = {p for i in fleet for p in (i.config_port, i.metrics_port)}
            port = port_free_on_every([instance.host for instance in fleet], taken=promised)
            for instance in fleet:
                # One container port on every "pod", as a pod template has (ServiceFleet has no option).
                instance.refresh_port = port
                instance._env["CONFIG_SERVICE_REFRESH_PORT"] = str(port)
            fleet.start()
            fleet.wait_serving(max(120.0, 3.0 * instances))
            say(
                f"config-service  {instances} processes on {fleet[0].host}..{fleet[-1].host}, refresh port"
                f" {port}  ({time.monotonic() - started:.1f} s)"
            )
            env = operator_environment(plane, aws, operator_env or {}, namespace=namespace)
            stack = cls(
                plane=plane,
                aws=aws,
                fleet=fleet,
                namespace=namespace,
                port=port,
                workdir=workdir,
                operator_env=env,
            )
            stack._prepare_namespace()
            stack.start_operator()
            started = time.monotonic()
            stack.create_pods()
            stack.wait_synced(instances)
            say(
                f"operator        pid {stack.operator_pid}; podSync registered {instances} Ready pods in"
                f" Cloud Map ({time.monotonic() - started:.1f} s)"
            )
            return stack
        except BaseException:
            if stack is not None:
                stack.stop()
            else:
                if fleet is not None:
                    fleet.close()
                if aws is not None:
                    aws.stop()
                plane.stop()
            raise

    def _prepare_namespace(self) -> None:
        self.plane.ensure_crds()
        self.plane.create_namespace(self.namespace)
        manifest = route_manifest(aws=self.aws, port=self.port)
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def start_operator(self, timeout: float = 90.0) -> None:
        """Start `config-refresh-operator --standalone --namespace NS`; wait until it indexed the routes."""
        self.operator = launch_operator(
            env=self.operator_env, namespace=self.namespace, log_path=self.operator_log, timeout=timeout
        )

    def create_pods(self) -> None:
        """One Pod per instance (name = instance id), then its status: Running, Ready, podIP = its host."""
        from kubernetes import client

        with self.plane.api_client() as api_client:
            core = client.CoreV1Api(api_client)
            for instance in self.fleet:
                pod: Any = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": instance.instance_id, "labels": {"app": APP_LABEL}},
                    "spec": {
                        "nodeName": "local",
                        "containers": [{"name": "app", "image": "config-service:local"}],
                    },
                }
                core.create_namespaced_pod(self.namespace, pod)
                core.patch_namespaced_pod_status(
                    instance.instance_id,
                    self.namespace,
                    {
                        "status": {
                            "phase": "Running",
                            "podIP": instance.host,
                            "podIPs": [{"ip": instance.host}],
                            # what kubectl's READY column counts (the Ready condition is what podSync reads)
                            "containerStatuses": [
                                {
                                    "name": "app",
                                    "ready": True,
                                    "started": True,
                                    "restartCount": 0,
                                    "image": "config-service:local",
                                    "imageID": "",
                                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                                }
                            ],
                            "conditions": [
                                {
                                    "type": "Ready",
                                    "status": "True",
                                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                                }
                            ],
                        }
                    },
                )

    def healthy_in_cloud_map(self) -> set[str]:
        """Instance ids Cloud Map returns for a HEALTHY discovery of the route's service."""
        found = self.aws.client("servicediscovery").discover_instances(
            NamespaceName=self.aws.namespace_name,
            ServiceName=self.aws.service_name,
            HealthStatus="HEALTHY",
            MaxResults=1000,
        )
        return {item["InstanceId"] for item in found["Instances"]}

    def wait_synced(self, count: int, timeout: float = 120.0) -> None:
        """Until podSync has every instance HEALTHY in Cloud Map and the route reports Ready and counts them
        (its INSTANCES column, `status.registered`)."""
        # podSync names each pod's instance <namespace>.<pod> (the pods here are named after instances)
        wanted = {instance_id_for(self.namespace, instance.instance_id) for instance in self.fleet}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.operator is not None and self.operator.poll() is not None:
                raise StackError(f"the operator exited:\n{self.operator_tail()}")
            if (
                wanted <= self.healthy_in_cloud_map()
                and self.route_ready()
                and self.route_counts()
                == (
                    len(wanted),
                    len(wanted),
                )
            ):
                return
            time.sleep(0.2)
        raise StackError(
            f"podSync did not register all {count} pods within {timeout:.0f} s "
            f"(healthy: {len(self.healthy_in_cloud_map())}):\n{self.operator_tail()}"
        )

    def route_counts(self) -> tuple[int | None, int | None]:
        """The route's (status.registered, status.healthy) as podSync last wrote them."""
        obj = json.loads(self.kubectl("get", "configroute", ROUTE_NAME, "-o", "json").stdout)
        status = obj.get("status") or {}
        return (status.get("registered"), status.get("healthy"))

    def route_ready(self) -> bool:
        obj = json.loads(self.kubectl("get", "configroute", ROUTE_NAME, "-o", "json").stdout)
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    # ----- using ------------------------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl in the stack's namespace with the admin kubeconfig."""
        return self.plane.kubectl("-n", self.namespace, *args, input=input, check=check)

    def client_env(self) -> dict[str, str]:
        """What configctl, kubectl and AWS SDKs need to use this stack (KUBECONFIG, endpoint, keys)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.aws.env())
        env["KUBECONFIG"] = str(self.plane.kubeconfig)
        return env

    def refreshes(self) -> list[dict[str, Any]]:
        """Every ConfigRefresh in the namespace."""
        items: list[dict[str, Any]] = json.loads(self.kubectl("get", REFRESHES, "-o", "json").stdout)["items"]
        return items

    @property
    def operator_pid(self) -> int | None:
        return self.operator.pid if self.operator is not None else None

    def operator_tail(self, lines: int = 60) -> str:
        try:
            text = self.operator_log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no operator log)"
        return "\n".join(text.splitlines()[-lines:])

    # ----- stopping ---------------------------------------------------------------------------------

    def stop_operator(self) -> None:
        """Stop the operator (SIGTERM, SIGKILL after 5 s)."""
        stop_process(self.operator)

    def stop(self) -> None:
        """Stop everything this object started; never raises."""
        with contextlib.suppress(Exception):
            self.stop_operator()
        with contextlib.suppress(Exception):
            self.fleet.close()
        with contextlib.suppress(Exception):
            self.aws.stop()
        with contextlib.suppress(Exception):
            self.plane.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        """What another process needs to use or stop this stack (the demo-up state file)."""
        return {
            "workdir": str(self.workdir),
            "namespace": self.namespace,
            "kubeconfig": str(self.plane.kubeconfig),
            "server": self.plane.server,
            "controlplane": self.plane.state(),
            "aws": self.aws.describe(),
            "operator": {
                "pid": self.operator_pid,
                "executable": str(operator_executable()),
                "log": str(self.operator_log),
                "metrics": f"http://127.0.0.1:{self.operator_env['CONFIG_REFRESH_METRICS_PORT']}/metrics",
            },
            "instances": [
                {
                    "id": instance.instance_id,
                    "pid": instance.pid,
                    "refresh": instance.refresh_address,
                    "config": instance.config_address,
                    "log": str(instance.log_path),
                }
                for instance in self.fleet
            ],
            "python": sys.executable,
        }


def stop_described(description: dict[str, Any]) -> list[str]:
    """Stop a detached stack from its `describe()` record; returns what was stopped (never raises)."""
    stopped: list[str] = []
    operator = description.get("operator") or {}
    if operator.get("pid") and _stop_python_pid(int(operator["pid"]), "config-refresh-operator"):
        stopped.append(f"operator (pid {operator['pid']})")
    count = sum(
        1
        for item in description.get("instances", [])
        if item.get("pid") and _stop_python_pid(int(item["pid"]), "config_service")
    )
    if count:
        stopped.append(f"{count} config-service processes")
    aws = description.get("aws") or {}
    if aws.get("pid") and _stop_python_pid(int(aws["pid"]), "devstack.local_aws"):
        stopped.append(f"local AWS (pid {aws['pid']})")
    plane = description.get("controlplane") or {}
    for name in ("kube-apiserver", "etcd"):
        pid = (plane.get("pids") or {}).get(name)
        executable = (plane.get("executables") or {}).get(name)
        if pid and executable and stop_pid(int(pid), Path(executable)):
            stopped.append(f"{name} (pid {pid})")
    workdir = description.get("workdir")
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return stopped


def _stop_python_pid(pid: int, marker: str, timeout: float = 10.0) -> bool:
    """SIGTERM then SIGKILL `pid`, only if its command line contains `marker` (no recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if marker not in cmdline:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    return True
