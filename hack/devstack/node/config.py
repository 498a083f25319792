"""The one-node cluster's configuration files: containerd's, the CNI network's and the kubelet's.

Written into the cluster's working directory before each component starts; every setting that these
machines needed (and why) is commented where it is set. devstack.node starts the components.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from devstack.controlplane.pki import Pki
from devstack.node import images as node_images
from devstack.node import pki as node_pki
from devstack.node.host import BRIDGE, BRIDGE_IP, CNI_BIN, CONTAINERD_ROOT, NODE_NAME, POD_SUBNET, RUNC


def write_containerd_config(workdir: Path, socket: Path) -> Path:
    """containerd's config (CRI with runc, overlayfs, our CNI dir) and the CNI bridge conflist."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    text = f"""version = 2
root = "{CONTAINERD_ROOT}"
state = "{workdir / "containerd-state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{socket}"

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
    conf_dir = "{workdir / "cni"}"
"""
    (workdir / "cni").mkdir(parents=True, exist_ok=True)
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
                    "ranges": [[{"subnet": POD_SUBNET, "rangeStart": "10.85.0.10", "gateway": BRIDGE_IP}]],
                    # A default route through the bridge: the Service address (NAT on the host) and
                    # the host's own addresses are reached through it.
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(workdir / "cni-ipam"),
                },
            }
        ],
    }
    (workdir / "cni" / "10-config-refresh-node.conflist").write_text(json.dumps(conflist, indent=2))
    path = workdir / "containerd.toml"
    path.write_text(text)
    return path


def write_kubelet_config(workdir: Path, socket: Path, pki: Pki) -> Path:
    """The kubelet's static config file, with a serving certificate from the control plane's CA."""
    p = pki
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
        "containerRuntimeEndpoint": f"unix://{socket}",
        "cgroupDriver": "cgroupfs",
        # 1.35 refuses cgroup v1 (these hosts: v1 controllers plus a v2 unified mount) without this.
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(workdir / "pod-logs"),
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
    path = workdir / "kubelet-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
