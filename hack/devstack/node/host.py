"""The host side of the one-node cluster: root and packages, the bridge, the NAT rule, the drain, cleanup.

Everything here changes the machine outside the cluster's working directory, so each piece is idempotent
and `cleanup_leftovers` undoes all of it (after a crash too): the iptables chain of ours, mounts under the
working directory, network namespaces and pod cgroups a drain left, the bridge. devstack.node uses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from devstack.controlplane.procs import ControlPlaneError
from devstack.node import images as node_images

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
RUNC = "/usr/sbin/runc"
CNI_BIN = "/usr/lib/cni"
PACKAGES = "containerd runc containernetworking-plugins iptables iproute2"


def say(message: str) -> None:
    print(f"[node] {message}", flush=True)


def run(
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
        say(f"missing {', '.join(missing)}: apt-get install {PACKAGES}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", *PACKAGES.split()],
            env=env,
            capture_output=True,
            check=False,
        )
        missing = _missing_packages()
    if missing:
        raise ControlPlaneError(f"missing {', '.join(missing)}: apt-get install -y {PACKAGES}")


def lock() -> IO[str]:
    handle = (WORKDIR.parent / f".{WORKDIR.name}.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ControlPlaneError(
            f"a one-node cluster is already running on this machine ({WORKDIR}); `make cluster-down` first"
        ) from None
    return handle


def network_up() -> None:
    if run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "replace", f"{BRIDGE_IP}/24", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def dnat(apiserver_port: int) -> None:
    """The `kubernetes` Service (10.0.0.1:443) to the API server, for pods: kube-proxy's one job here."""
    run(["iptables", "-t", "nat", "-N", NAT_CHAIN], check=False)
    run(["iptables", "-t", "nat", "-F", NAT_CHAIN])
    rule = ["-d", f"{SERVICE_IP}/32", "-p", "tcp", "--dport", "443"]
    run(
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
        if run(["iptables", "-t", "nat", "-C", chain, "-j", NAT_CHAIN], check=False).returncode != 0:
            run(["iptables", "-t", "nat", "-I", chain, "-j", NAT_CHAIN])


def drain(kubectl: Path, kubeconfig: Path, socket: Path, timeout: float = 90.0) -> None:
    """Deletes every pod and waits until the kubelet has torn their sandboxes down (CNI DEL, netns,
    mounts, pod cgroups): no pod left in the API and no task left in containerd. A pod force-deleted
    from the API is gone there at once, so the second condition is the one that matters then."""
    base = [str(kubectl), f"--kubeconfig={kubeconfig}"]
    # Deployments and ReplicaSets would recreate the pods: scale nothing down, delete the owners first.
    run(
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
    run([*base, "delete", "pods", "--all", "-A", "--grace-period=5", "--wait=false"], check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = run([*base, "get", "pods", "-A", "-o", "name"], check=False)
        pods_gone = out.returncode != 0 or not out.stdout.strip()
        tasks = node_images.ctr(socket, "tasks", "ls", "-q", check=False)
        if pods_gone and (tasks.returncode != 0 or not tasks.stdout.strip()):
            return
        time.sleep(1)
    say("pods still present after the drain; stopping their containers directly")


def stop_containers(socket: Path) -> None:
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


def cleanup_leftovers() -> None:
    """Unmounts what is left under the working directory, removes it, the bridge and the NAT chain."""
    for chain in ("PREROUTING", "OUTPUT"):
        while run(["iptables", "-t", "nat", "-D", chain, "-j", NAT_CHAIN], check=False).returncode == 0:
            pass
    run(["iptables", "-t", "nat", "-F", NAT_CHAIN], check=False)
    run(["iptables", "-t", "nat", "-X", NAT_CHAIN], check=False)
    prefix = f"{WORKDIR}/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        run(["umount", "-l", mount], check=False)
    shutil.rmtree(WORKDIR, ignore_errors=True)
    # After an unfinished drain: network namespaces of sandboxes (containerd's CRI names them cni-*, and
    # nothing else on these machines runs it) and empty pod cgroups. Busy ones are left alone.
    netns = Path("/run/netns")
    for path in netns.glob("cni-*") if netns.is_dir() else []:
        if not run(["ip", "netns", "pids", path.name], check=False).stdout.strip():
            run(["ip", "netns", "delete", path.name], check=False)
    for pod in sorted(Path("/sys/fs/cgroup").glob("*/kubepods/**/pod*"), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            pod.rmdir()
    if run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
        run(["ip", "link", "del", BRIDGE], check=False)
