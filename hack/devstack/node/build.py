"""Builds the node half of the local cluster: kube-scheduler, kube-controller-manager and kubelet.

They come from the same `k8s.io/kubernetes` module and version as the control plane's kube-apiserver
(`controlplane_build.KUBERNETES_VERSION`), through a wrapper module of their own made the same way (each
staging module replaced with the matching `v0.x.y`, the list read from Kubernetes' go.mod). The wrapper
lives in a separate cache entry, `…/controlplane/node-k8s-<version>/`, so the control plane's entry is
never rewritten; Go's build cache is shared, so most packages compiled for kube-apiserver are reused.

Like the control plane: a binary already built is not rebuilt (a cached run takes well under a second),
two builds take turns on a lock, and only Go modules are downloaded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.controlplane import build as controlplane_build
from devstack.controlplane.build import KUBERNETES_VERSION

__all__ = ["NodeBinaries", "binaries", "build_dir", "ensure_built"]

_COMMANDS = {
    "kube-scheduler": "cmd/kube-scheduler",
    "kube-controller-manager": "cmd/kube-controller-manager",
    "kubelet": "cmd/kubelet",
}


@dataclass(frozen=True)
class NodeBinaries:
    """Paths of the three executables the node adds to the control plane."""

    kube_scheduler: Path
    kube_controller_manager: Path
    kubelet: Path

    def all(self) -> list[Path]:
        return [self.kube_scheduler, self.kube_controller_manager, self.kubelet]

    def missing(self) -> list[Path]:
        return [p for p in self.all() if not (p.is_file() and os.access(p, os.X_OK))]


def build_dir() -> Path:
    """`…/config-refresh/controlplane/node-k8s-<version>`: one cache entry per Kubernetes version."""
    return controlplane_build.cache_root() / f"node-k8s-{KUBERNETES_VERSION}"


def binaries(root: Path | None = None) -> NodeBinaries:
    bin_dir = (root or build_dir()) / "bin"
    return NodeBinaries(
        kube_scheduler=bin_dir / "kube-scheduler",
        kube_controller_manager=bin_dir / "kube-controller-manager",
        kubelet=bin_dir / "kubelet",
    )


def _say(message: str) -> None:
    print(f"[node-build] {message}", flush=True)


def ensure_built(root: Path | None = None, *, quiet: bool = False) -> NodeBinaries:
    """Builds whichever of the three is missing; raises ControlPlaneBuildError if it cannot."""
    root = root or build_dir()
    bins = binaries(root)
    if not bins.missing():
        if not quiet:
            _say(f"all node binaries cached in {root / 'bin'}")
        return bins
    started = time.monotonic()

    def build() -> None:
        _say(f"kube-scheduler, kube-controller-manager, kubelet v{KUBERNETES_VERSION}: building ...")
        built = controlplane_build.build_kubernetes_commands(root, _COMMANDS, say=_say)
        _say(f"built {', '.join(built) or 'nothing'} in {time.monotonic() - started:.1f}s; in {root / 'bin'}")

    controlplane_build.build_locked(root, bins.missing, build, no_go="the node needs Go to build them")
    return bins
