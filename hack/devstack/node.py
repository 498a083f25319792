"""A real one-node Kubernetes cluster on this machine: the test control plane plus a node that runs pods.

On top of etcd and kube-apiserver (devstack.controlplane) it runs kube-controller-manager and
kube-scheduler (built from the same `k8s.io/kubernetes` module, devstack.node_build), and a node: the
kubelet with Debian's containerd 1.6 as CRI runtime, runc, and the CNI bridge and host-local plugins.
Nothing is pulled from a registry: the pause image is a static Go binary built here (devstack.node_images)
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
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from devstack import controlplane_build, controlplane_pki, node_build, node_images, node_pki
from devstack.controlplane import ControlPlane
from devstack.controlplane_procs import ControlPlaneError, pid_runs, spawn, stop, stop_pid, tail, wait_until

__all__ = ["BRIDGE_IP", "Node", "NodeControlPlane", "down", "running", "up"]

NODE_NAME = "config-refresh-node"
BRIDGE = "crnode0"
BRIDGE_IP = "10.85.0.1"
POD_SUBNET = "10.85.0.0/24"
SERVICE_IP = "10.0.0.1"
NAT_CHAIN = "CONFIG-REFRESH-NODE"
WORKDIR = Path(os.environ.get("CONFIG_REFRESH_NODE_DIR", "/var/tmp/config-refresh-node"))
# containerd's content store survives `down`, so images imported once are not imported again.
CONTAINERD_ROOT = Path(
    os.environ.get("CONFIG_REFRESH_NODE_CONTAINERD", "/var/lib/config-refresh-node/containerd")
)
READY_TIMEOUT = 240.0
RUNC = "/usr/sbin/runc"
CNI_BIN = "/usr/lib/cni"
_PACKAGES = "containerd runc containernetworking-plugins iptables iproute2"


def _say(message: str) -> None:
    print(f"[node] {message}", flush=True)


def _run(
    argv: Sequence[str], *, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, check=False, timeout=300)
    if check and proc.returncode != 0:
        raise ControlPlaneError(
            f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
        )
    return proc


def _missing_packages() -> list[str]:
    missing = [
        p for p in ("containerd", "containerd-shim-runc-v2", "ctr", "iptables", "ip") if not shutil.which(p)
    ]
    return missing + [
        p
        for p in (RUNC, f"{CNI_BIN}/bridge", f"{CNI_BIN}/host-local", f"{CNI_BIN}/loopback")
        if not Path(p).exists()
    ]


def check_host() -> None:
    """Root, and the runtime packages, installed with apt-get when missing (as hack/container-env.sh does
    for podman); raises ControlPlaneError with the command that fixes it otherwise."""
    if os.geteuid() != 0:
        raise ControlPlaneError("the one-node cluster needs root (cgroups, the bridge, containerd, mounts)")
    missing = _missing_packages()
    if missing and shutil.which("apt-get"):
        _say(f"missing {', '.join(missing)}: apt-get install {_PACKAGES}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", *_PACKAGES.split()],
            env=env,
            capture_output=True,
            check=False,
        )
        missing = _missing_packages()
    if missing:
        raise ControlPlaneError(f"missing {', '.join(missing)}: apt-get install -y {_PACKAGES}")


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
        lock = _lock()
        _cleanup_leftovers()
        WORKDIR.mkdir(parents=True)
        _network_up()
        plane = NodeControlPlane.start(binaries=bins, workdir=WORKDIR, detached=True)
        if not isinstance(plane, NodeControlPlane):
            raise TypeError(type(plane))
        node = cls(plane, WORKDIR)
        node._lock = lock
        if not detached:
            atexit.register(node.stop)
        try:
            _dnat(plane.apiserver_port)
            node._start_controllers()
            node._start_containerd()
            node_images.ensure_pause(node.containerd_socket)
            node._start_kubelet()
            node.wait_ready()
        except BaseException:
            node.stop()
            raise
        _say(f"node {NODE_NAME} Ready in {time.monotonic() - started:.1f}s; API server {plane.server}")
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
                f"--secure-port={_free_port()}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )

    def _containerd_config(self) -> Path:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        text = f"""version = 2
root = "{CONTAINERD_ROOT}"
state = "{self.workdir / "containerd-state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{self.containerd_socket}"

[{cri}]
  sandbox_image = "{node_images.PAUSE_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE: the sandbox's oom_score_adj of -998 fails in runc ("failed to update
  # /proc/self/oom_score_adj: Permission denied"); keep every score at or above containerd's own.
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.workdir / "cni"}"
"""
        (self.workdir / "cni").mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "0.4.0",
            "name": "config-refresh-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [
                            [{"subnet": POD_SUBNET, "rangeStart": "10.85.0.10", "gateway": BRIDGE_IP}]
                        ],
                        # A default route through the bridge: the Service address (NAT on the host) and
                        # the host's own addresses are reached through it.
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni-ipam"),
                    },
                }
            ],
        }
        (self.workdir / "cni" / "10-config-refresh-node.conflist").write_text(json.dumps(conflist, indent=2))
        path = self.workdir / "containerd.toml"
        path.write_text(text)
        return path

    def _start_containerd(self) -> None:
        CONTAINERD_ROOT.mkdir(parents=True, exist_ok=True)
        config = self._containerd_config()
        containerd = shutil.which("containerd") or "containerd"
        proc = self._spawn("containerd", [containerd, f"--config={config}"])
        wait_until(
            lambda: node_images.ctr(self.containerd_socket, "version", check=False).returncode == 0,
            what="containerd",
            process=proc,
            log_path=self.logs["containerd"],
            timeout=READY_TIMEOUT,
        )

    def _kubelet_config(self) -> Path:
        p = self.plane.pki
        serving = node_pki.issue(p, "kubelet-serving", common_name=NODE_NAME, server_ips=(BRIDGE_IP,))
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": BRIDGE_IP,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(p.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(serving.cert),
            "tlsPrivateKeyFile": str(serving.key),
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            # 1.35 refuses cgroup v1 (these hosts: v1 controllers plus a v2 unified mount) without this.
            "failCgroupV1": False,
            "failSwapOn": False,
            "podLogsDir": str(self.workdir / "pod-logs"),
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            "registerNode": True,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "2%",
                "imagefs.available": "2%",
            },
            "imageGCHighThresholdPercent": 99,
            "imageGCLowThresholdPercent": 98,
            "staticPodPath": "",
            "logging": {"verbosity": 1},
        }
        path = self.workdir / "kubelet-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _start_kubelet(self) -> None:
        kubeconfig = self.plane.client_kubeconfig(
            "kubelet", common_name=f"system:node:{NODE_NAME}", organization="system:nodes"
        )
        config = self._kubelet_config()
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
        """Until the node is registered and Ready (fails early if a component exits)."""

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
            return out.stdout.strip() == "True"

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
            _drain(self.plane.binaries.kubectl, self.plane.kubeconfig, self.containerd_socket)
        for name in ("kubelet", "scheduler", "controller-manager"):
            stop(self.procs.pop(name, None))
        self.plane.stop(keep_files=True)
        _stop_containers(self.containerd_socket)
        stop(self.procs.pop("containerd", None))
        _cleanup_leftovers()
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


# ------------------------------------------------------------------------------------------ host pieces


def _free_port() -> int:
    from devstack.controlplane_procs import free_port

    return free_port()


def _lock() -> IO[str]:
    handle = (WORKDIR.parent / f".{WORKDIR.name}.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ControlPlaneError(
            f"a one-node cluster is already running on this machine ({WORKDIR}); `make cluster-down` first"
        ) from None
    return handle


def _network_up() -> None:
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    _run(["ip", "addr", "replace", f"{BRIDGE_IP}/24", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])


def _dnat(apiserver_port: int) -> None:
    """The `kubernetes` Service (10.0.0.1:443) to the API server, for pods: kube-proxy's one job here."""
    _run(["iptables", "-t", "nat", "-N", NAT_CHAIN], check=False)
    _run(["iptables", "-t", "nat", "-F", NAT_CHAIN])
    rule = ["-d", f"{SERVICE_IP}/32", "-p", "tcp", "--dport", "443"]
    _run(
        [
            "iptables",
            "-t",
            "nat",
            "-A",
            NAT_CHAIN,
            *rule,
            "-j",
            "DNAT",
            "--to-destination",
            f"{BRIDGE_IP}:{apiserver_port}",
        ]
    )
    for chain in ("PREROUTING", "OUTPUT"):
        if _run(["iptables", "-t", "nat", "-C", chain, "-j", NAT_CHAIN], check=False).returncode != 0:
            _run(["iptables", "-t", "nat", "-I", chain, "-j", NAT_CHAIN])


def _drain(kubectl: Path, kubeconfig: Path, socket: Path, timeout: float = 90.0) -> None:
    """Deletes every pod and waits until the kubelet has torn their sandboxes down (CNI DEL, netns,
    mounts, pod cgroups): no pod left in the API and no task left in containerd. A pod force-deleted
    from the API is gone there at once, so the second condition is the one that matters then."""
    base = [str(kubectl), f"--kubeconfig={kubeconfig}"]
    # Deployments and ReplicaSets would recreate the pods: scale nothing down, delete the owners first.
    _run(
        [
            *base,
            "delete",
            "deployments,replicasets,statefulsets,daemonsets,jobs",
            "--all",
            "-A",
            "--wait=false",
        ],
        check=False,
    )
    _run([*base, "delete", "pods", "--all", "-A", "--grace-period=5", "--wait=false"], check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = _run([*base, "get", "pods", "-A", "-o", "name"], check=False)
        pods_gone = out.returncode != 0 or not out.stdout.strip()
        tasks = node_images.ctr(socket, "tasks", "ls", "-q", check=False)
        if pods_gone and (tasks.returncode != 0 or not tasks.stdout.strip()):
            return
        time.sleep(1)
    _say("pods still present after the drain; stopping their containers directly")


def _stop_containers(socket: Path) -> None:
    """Kills and removes any task containerd still runs (a drain that did not finish)."""
    if not socket.exists():
        return
    tasks = node_images.ctr(socket, "tasks", "ls", "-q", check=False).stdout.split()
    for task in tasks:
        node_images.ctr(socket, "tasks", "kill", "-s", "SIGKILL", task, check=False)
    for task in tasks:
        for _ in range(50):
            if node_images.ctr(socket, "tasks", "delete", task, check=False).returncode == 0:
                break
            time.sleep(0.1)


def _cleanup_leftovers() -> None:
    """Unmounts what is left under the working directory, removes it, the bridge and the NAT chain."""
    for chain in ("PREROUTING", "OUTPUT"):
        while _run(["iptables", "-t", "nat", "-D", chain, "-j", NAT_CHAIN], check=False).returncode == 0:
            pass
    _run(["iptables", "-t", "nat", "-F", NAT_CHAIN], check=False)
    _run(["iptables", "-t", "nat", "-X", NAT_CHAIN], check=False)
    prefix = f"{WORKDIR}/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        _run(["umount", "-l", mount], check=False)
    shutil.rmtree(WORKDIR, ignore_errors=True)
    # After an unfinished drain: network namespaces of sandboxes (containerd's CRI names them cni-*, and
    # nothing else on these machines runs it) and empty pod cgroups. Busy ones are left alone.
    netns = Path("/run/netns")
    for path in netns.glob("cni-*") if netns.is_dir() else []:
        if not _run(["ip", "netns", "pids", path.name], check=False).stdout.strip():
            _run(["ip", "netns", "delete", path.name], check=False)
    for pod in sorted(Path("/sys/fs/cgroup").glob("*/kubepods/**/pod*"), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            pod.rmdir()
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
        _run(["ip", "link", "del", BRIDGE], check=False)


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
        _cleanup_leftovers()
        return "no one-node cluster was running"
    pids: dict[str, int] = state["pids"]
    exe = {n: Path(p) for n, p in state["executables"].items()}
    if pid_runs(pids.get("kubelet", -1), exe["kubelet"]) and pid_runs(
        pids.get("kube-apiserver", -1), exe["kube-apiserver"]
    ):
        _drain(
            controlplane_build.binaries().kubectl, Path(state["kubeconfig"]), Path(state["containerd_socket"])
        )
    stopped = []
    for name in ("kubelet", "scheduler", "controller-manager", "kube-apiserver", "etcd"):
        pid = pids.get(name)
        if pid is not None and stop_pid(pid, exe[name]):
            stopped.append(name)
    _stop_containers(Path(state["containerd_socket"]))
    pid = pids.get("containerd")
    if pid is not None and stop_pid(pid, exe["containerd"]):
        stopped.append("containerd")
    _cleanup_leftovers()
    _state_file().unlink(missing_ok=True)
    return f"stopped {', '.join(stopped) or 'nothing (already gone)'}; removed {state['workdir']}"
