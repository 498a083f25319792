"""A real one-node Kubernetes cluster on this machine: the test control plane plus a node that runs pods.

On top of etcd and kube-apiserver (devstack.controlplane) it runs kube-controller-manager and
kube-scheduler (built from the same `k8s.io/kubernetes` module, devstack.node.build), and a node: the
kubelet with Debian's containerd 1.6 as CRI runtime, runc, and the CNI bridge and host-local plugins.
Nothing is pulled from a registry: the pause image is a static Go binary built here (devstack.node.images)
and the project's images come from podman (`make image`), imported with `ctr -n k8s.io images import`.

Network: one Linux bridge `crnode0` with 10.85.0.1/24 carries the pods (10.85.0.10 and up). The API
server listens on 10.85.0.1 (never on an external interface) and advertises it, so the `kubernetes`
Service's endpoints are real; there is no kube-proxy: one iptables DNAT rule in a chain of ours sends the
Service address 10.0.0.1:443 to the API server, which is what in-cluster clients use. The host reaches
pod IPs directly over the bridge. Anything else pods must reach on the host (the local AWS stack) must
listen on 10.85.0.1.

The machine-wide parts (cgroups under /kubepods, the bridge, the kubelet's port, containerd's socket)
make this one node per machine: a lock file guards it. It needs root.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from devstack.controlplane import build as controlplane_build
from devstack.controlplane import pki as controlplane_pki
from devstack.controlplane.plane import ControlPlane
from devstack.controlplane.procs import (
    ControlPlaneError,
    free_port,
    pid_runs,
    spawn,
    stop,
    stop_pid,
    tail,
    wait_until,
)
from devstack.node import build as node_build
from devstack.node import config as node_config
from devstack.node import host as node_host
from devstack.node import images as node_images
from devstack.node import pki as node_pki
from devstack.node.host import (
    BRIDGE_IP,
    CONTAINERD_ROOT,
    NODE_NAME,
    WORKDIR,
    check_host,
)

__all__ = ["BRIDGE_IP", "Node", "NodeControlPlane", "down", "running", "up"]

READY_TIMEOUT = 240.0


class NodeControlPlane(ControlPlane):
    """The test control plane, serving on the bridge address with the Node authorizer and SA admission on."""

    def __init__(
        self, *, binaries: controlplane_build.Binaries, workdir: Path, detached: bool = False
    ) -> None:
        super().__init__(binaries=binaries, workdir=workdir, detached=detached)
        self.pki = controlplane_pki.generate(workdir / "pki", extra_ips=(BRIDGE_IP,))
        self.server = f"https://{BRIDGE_IP}:{self.apiserver_port}"
        self._write_admin_kubeconfig()

    def _apiserver_argv(self) -> list[str]:
        replaced = {
            "--bind-address=127.0.0.1": f"--bind-address={BRIDGE_IP}",
            "--advertise-address=127.0.0.1": f"--advertise-address={BRIDGE_IP}",
            "--authorization-mode=RBAC": "--authorization-mode=Node,RBAC",
        }
        # A controller-manager now creates `default` ServiceAccounts, and the bridge address is a valid
        # endpoint for the `kubernetes` Service: both envtest-style workarounds go.
        dropped = {"--disable-admission-plugins=ServiceAccount", "--endpoint-reconciler-type=none"}
        argv = [replaced.get(a, a) for a in super()._apiserver_argv() if a not in dropped]
        return [
            *argv,
            "--enable-admission-plugins=NodeRestriction",
            # `kubectl logs/exec` reach the kubelet by its address: the node's name resolves nowhere.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={self.pki.admin_cert}",
            f"--kubelet-client-key={self.pki.admin_key}",
            f"--kubelet-certificate-authority={self.pki.ca_cert}",
        ]

    def client_kubeconfig(self, name: str, *, common_name: str, organization: str | None = None) -> Path:
        """A kubeconfig with a client certificate from the control plane's CA (for a component)."""
        pair = node_pki.issue(self.pki, name, common_name=common_name, organization=organization)
        user = {"client-certificate": str(pair.cert), "client-key": str(pair.key)}
        return self._write_kubeconfig(self.workdir / f"{name}.kubeconfig", user=user, name=name)


class Node:
    """The running cluster: control plane, controller-manager, scheduler, containerd and the kubelet."""

    def __init__(self, plane: NodeControlPlane, workdir: Path) -> None:
        self.plane = plane
        self.workdir = workdir
        self.binaries = node_build.ensure_built(quiet=True)
        self.containerd_socket = workdir / "containerd.sock"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = {
            n: workdir / "logs" / f"{n}.log"
            for n in ("controller-manager", "scheduler", "containerd", "kubelet")
        }
        self.log_paths = {**plane.log_paths, **self.logs}

    # ------------------------------------------------------------------------------------------- start

    @classmethod
    def start(cls, *, detached: bool = False) -> Node:
        """Starts everything and returns once the node is Ready; stops what it started if that fails."""
        check_host()
        if running() is not None:
            raise ControlPlaneError(
                "a one-node cluster started by `make cluster-up` runs; `make cluster-down` first"
            )
        started = time.monotonic()
        bins = controlplane_build.ensure_built(quiet=True)
        node_build.ensure_built(quiet=True)
        WORKDIR.parent.mkdir(parents=True, exist_ok=True)
        lock = node_host.lock()
        node_host.cleanup_leftovers()
        WORKDIR.mkdir(parents=True)
        node_host.network_up()
        plane = NodeControlPlane.start(binaries=bins, workdir=WORKDIR, detached=True)
        if not isinstance(plane, NodeControlPlane):
            raise TypeError(type(plane))
        node = cls(plane, WORKDIR)
        node._lock = lock
        if not detached:
            atexit.register(node.stop)
        try:
            node_host.dnat(plane.apiserver_port)
            node._start_controllers()
            node._start_containerd()
            node_images.ensure_pause(node.containerd_socket)
            node._start_kubelet()
            node.wait_ready()
        except BaseException:
            node.stop()
            raise
        node_host.say(
            f"node {NODE_NAME} Ready in {time.monotonic() - started:.1f}s; API server {plane.server}"
        )
        return node

    _lock: IO[str] | None = None

    def _spawn(
        self, name: str, argv: list[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        proc = spawn(argv, log_path=self.logs[name], env=env)
        self.procs[name] = proc
        return proc

    def _start_controllers(self) -> None:
        p = self.plane.pki
        cm = self.plane.client_kubeconfig("controller-manager", common_name="system:kube-controller-manager")
        self._spawn(
            "controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={cm}",
                f"--authentication-kubeconfig={cm}",
                f"--authorization-kubeconfig={cm}",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={p.sa_private_key}",
                f"--root-ca-file={p.ca_cert}",
                f"--cluster-signing-cert-file={p.ca_cert}",
                f"--cluster-signing-key-file={p.ca_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
                "--profiling=false",
            ],
        )
        sched = self.plane.client_kubeconfig("scheduler", common_name="system:kube-scheduler")
        self._spawn(
            "scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={sched}",
                f"--authentication-kubeconfig={sched}",
                f"--authorization-kubeconfig={sched}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )

    def _start_containerd(self) -> None:
        CONTAINERD_ROOT.mkdir(parents=True, exist_ok=True)
        config = node_config.write_containerd_config(self.workdir, self.containerd_socket)
        containerd = shutil.which("containerd") or "containerd"
        proc = self._spawn("containerd", [containerd, f"--config={config}"])
        wait_until(
            lambda: node_images.ctr(self.containerd_socket, "version", check=False).returncode == 0,
            what="containerd",
            process=proc,
            log_path=self.logs["containerd"],
            timeout=READY_TIMEOUT,
        )

    def _start_kubelet(self) -> None:
        kubeconfig = self.plane.client_kubeconfig(
            "kubelet", common_name=f"system:node:{NODE_NAME}", organization="system:nodes"
        )
        config = node_config.write_kubelet_config(self.workdir, self.containerd_socket, self.plane.pki)
        env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"}
        self._spawn(
            "kubelet",
            [
                str(self.binaries.kubelet),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={BRIDGE_IP}",
            ],
            env=env,
        )

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = self.logs[name]
                raise ControlPlaneError(f"{name} exited with code {proc.returncode}; log {log}:\n{tail(log)}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the node is registered and Ready, and the controller-manager has made the `default`
        ServiceAccount (pods without one are refused by admission); fails early if a component exits."""

        def ready() -> bool:
            self._check_alive()
            out = self.plane.kubectl(
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            )
            if out.stdout.strip() != "True":
                return False
            return (
                self.plane.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            )

        wait_until(
            ready, what=f"node {NODE_NAME}", process=None, log_path=self.logs["kubelet"], timeout=timeout
        )

    # -------------------------------------------------------------------------------------------- images

    def load_image(self, image: str) -> None:
        """Imports a podman image (e.g. `localhost/config-service:e2e`) into the node's containerd."""
        node_images.import_podman_image(self.containerd_socket, image)

    # --------------------------------------------------------------------------------------------- stop

    def stop(self) -> None:
        """Drains the pods, stops every component, removes the network pieces and the working directory."""
        atexit.unregister(self.stop)
        kubelet = self.procs.get("kubelet")
        if kubelet is not None and kubelet.poll() is None and self.plane.pids.get("kube-apiserver"):
            node_host.drain(self.plane.binaries.kubectl, self.plane.kubeconfig, self.containerd_socket)
        for name in ("kubelet", "scheduler", "controller-manager"):
            stop(self.procs.pop(name, None))
        self.plane.stop(keep_files=True)
        node_host.stop_containers(self.containerd_socket)
        stop(self.procs.pop("containerd", None))
        node_host.cleanup_leftovers()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # ----------------------------------------------------------------------------------------- state file

    def state(self) -> dict[str, Any]:
        executables = {
            "kubelet": str(self.binaries.kubelet),
            "scheduler": str(self.binaries.kube_scheduler),
            "controller-manager": str(self.binaries.kube_controller_manager),
            "containerd": shutil.which("containerd") or "containerd",
        }
        pids = {name: proc.pid for name, proc in self.procs.items() if proc.poll() is None}
        plane = self.plane.state()
        return {
            "workdir": str(self.workdir),
            "kubeconfig": str(self.plane.kubeconfig),
            "server": self.plane.server,
            "containerd_socket": str(self.containerd_socket),
            "pids": {**plane["pids"], **pids},
            "executables": {**plane["executables"], **executables},
            "logs": {k: str(v) for k, v in self.log_paths.items()},
        }


# -------------------------------------------------------------------------------- `make cluster-up/down`


def _state_file() -> Path:
    return controlplane_build.cache_root() / "run" / "node-state.json"


def _read_state() -> dict[str, Any] | None:
    path = _state_file()
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def running() -> dict[str, Any] | None:
    """The state of the cluster `up` started, if it still runs."""
    state = _read_state()
    if state is None:
        return None
    if not all(pid_runs(pid, Path(state["executables"][n])) for n, pid in state["pids"].items()):
        return None
    return state


def up() -> Node:
    """Starts a detached cluster for `make cluster-up` and records it in the state file."""
    state = running()
    if state is not None:
        raise ControlPlaneError(
            f"the one-node cluster is already running; export KUBECONFIG={state['kubeconfig']}"
        )
    node = Node.start(detached=True)
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(node.state(), indent=2))
    return node


def down() -> str:
    """Stops the cluster `up` started: drains its pods, stops each process, cleans the host up."""
    state = _read_state()
    if state is None:
        node_host.cleanup_leftovers()
        return "no one-node cluster was running"
    pids: dict[str, int] = state["pids"]
    exe = {n: Path(p) for n, p in state["executables"].items()}
    if pid_runs(pids.get("kubelet", -1), exe["kubelet"]) and pid_runs(
        pids.get("kube-apiserver", -1), exe["kube-apiserver"]
    ):
        node_host.drain(
            controlplane_build.binaries().kubectl, Path(state["kubeconfig"]), Path(state["containerd_socket"])
        )
    stopped = []
    for name in ("kubelet", "scheduler", "controller-manager", "kube-apiserver", "etcd"):
        pid = pids.get(name)
        if pid is not None and stop_pid(pid, exe[name]):
            stopped.append(name)
    node_host.stop_containers(Path(state["containerd_socket"]))
    pid = pids.get("containerd")
    if pid is not None and stop_pid(pid, exe["containerd"]):
        stopped.append("containerd")
    node_host.cleanup_leftovers()
    _state_file().unlink(missing_ok=True)
    return f"stopped {', '.join(stopped) or 'nothing (already gone)'}; removed {state['workdir']}"
