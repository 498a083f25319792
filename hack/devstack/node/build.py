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

import fcntl
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.controlplane import build as controlplane_build
from devstack.controlplane.build import KUBERNETES_VERSION, ControlPlaneBuildError

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


def _build(root: Path) -> list[str]:
    src = root / "src" / "kubernetes"
    src.mkdir(parents=True, exist_ok=True)
    staged = controlplane_build.kubernetes_staging_modules(cwd=src)
    minor = KUBERNETES_VERSION.split(".", 1)[1]
    controlplane_build._wrapper(
        src,
        require=f"k8s.io/kubernetes v{KUBERNETES_VERSION}",
        replaces=[f"{m} => {m} v0.{minor}" for m in staged],
        imports=[f"k8s.io/kubernetes/{pkg}" for pkg in _COMMANDS.values()],
    )
    controlplane_build._go(["mod", "tidy"], cwd=src)
    ldflags = controlplane_build._kubernetes_ldflags(KUBERNETES_VERSION)
    done = []
    for name, pkg in _COMMANDS.items():
        target = root / "bin" / name
        if target.exists():
            continue
        t0 = time.monotonic()
        tmp = root / "bin" / f".{name}.tmp"
        controlplane_build._go(
            ["build", f"-ldflags={ldflags}", "-o", str(tmp), f"k8s.io/kubernetes/{pkg}"], cwd=src
        )
        controlplane_build._install(tmp, target)
        _say(f"{name}: built in {time.monotonic() - t0:.1f}s")
        done.append(name)
    return done


def ensure_built(root: Path | None = None, *, quiet: bool = False) -> NodeBinaries:
    """Builds whichever of the three is missing; raises ControlPlaneBuildError if it cannot."""
    root = root or build_dir()
    bins = binaries(root)
    if not bins.missing():
        if not quiet:
            _say(f"all node binaries cached in {root / 'bin'}")
        return bins
    if shutil.which("go") is None:
        missing = ", ".join(p.name for p in bins.missing())
        raise ControlPlaneBuildError(f"missing {missing} in {root / 'bin'}; the node needs Go to build them")
    (root / "bin").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (root / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _say(f"kube-scheduler, kube-controller-manager, kubelet v{KUBERNETES_VERSION}: building ...")
            built = _build(root)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _say(f"built {', '.join(built) or 'nothing'} in {time.monotonic() - started:.1f}s; in {root / 'bin'}")
    still = bins.missing()
    if still:
        raise ControlPlaneBuildError(f"node build finished but {', '.join(map(str, still))} missing")
    return bins
