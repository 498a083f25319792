"""Images for the one-node cluster's containerd, none of them from a registry (none is reachable here).

- The pause image (every pod's sandbox): a static Go program of a few lines that waits for a signal and
  reaps orphaned children, as Kubernetes' own pause does; built with the machine's Go once per cache entry
  and packed here into a one-layer docker-archive tarball, no container engine needed.
- The project's images: built by podman (`make image`), saved with `podman save` and imported with
  `ctr -n k8s.io images import`, the namespace the CRI plugin reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from devstack.controlplane.build import ControlPlaneBuildError
from devstack.controlplane.procs import ControlPlaneError
from devstack.node import build as node_build

PAUSE_IMAGE = "localhost/pause:config-refresh-1"
NAMESPACE = "k8s.io"

_PAUSE_GO = """package main

// The sandbox process of every pod: sleeps until SIGINT/SIGTERM and reaps orphaned children (it is PID 1
// of the pod's namespaces when the process namespace is shared).
import (
\t"os"
\t"os/signal"
\t"syscall"
)

func main() {
\tstop := make(chan os.Signal, 1)
\tsignal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
\tchildren := make(chan os.Signal, 8)
\tsignal.Notify(children, syscall.SIGCHLD)
\tfor {
\t\tselect {
\t\tcase <-stop:
\t\t\treturn
\t\tcase <-children:
\t\t\tfor {
\t\t\t\tvar status syscall.WaitStatus
\t\t\t\tpid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
\t\t\t\tif pid <= 0 || err != nil {
\t\t\t\t\tbreak
\t\t\t\t}
\t\t\t}
\t\t}
\t}
}
"""


def ctr(
    socket: Path, *args: str, check: bool = True, timeout: float = 600.0
) -> subprocess.CompletedProcess[str]:
    """`ctr --address SOCKET -n k8s.io ARGS`."""
    argv = ["ctr", "--address", str(socket), "-n", NAMESPACE, *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise ControlPlaneError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _pause_binary() -> Path:
    root = node_build.build_dir() / "pause"
    binary = root / "pause"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise ControlPlaneBuildError("building the pause image needs Go")
    root.mkdir(parents=True, exist_ok=True)
    (root / "go.mod").write_text("module pause\n\ngo 1.25.0\n")
    (root / "main.go").write_text(_PAUSE_GO)
    env = {**os.environ, "CGO_ENABLED": "0"}
    tmp = root / ".pause.tmp"
    proc = subprocess.run(
        [go, "build", "-ldflags=-s -w", "-o", str(tmp), "."],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ControlPlaneBuildError(f"go build of the pause binary failed: {proc.stderr.strip()}")
    os.replace(tmp, binary)
    return binary


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def pause_archive() -> Path:
    """The pause image as a docker-archive tarball (cached next to the binary)."""
    binary = _pause_binary()
    archive = binary.parent / f"pause-image-{PAUSE_IMAGE.rsplit(':', 1)[1]}.tar"
    if archive.exists():
        return archive
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w", format=tarfile.GNU_FORMAT) as layer:
        _tar_add(layer, "pause", binary.read_bytes(), mode=0o755)
    layer_bytes = layer_buffer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "config-refresh devstack.node.images (static Go pause)"}],
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [PAUSE_IMAGE], "Layers": ["layer.tar"]}]
    tmp = archive.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w") as tar:
        _tar_add(tar, "layer.tar", layer_bytes)
        _tar_add(tar, config_name, config_bytes)
        _tar_add(tar, "manifest.json", json.dumps(manifest).encode())
    os.replace(tmp, archive)
    return archive


def has_image(socket: Path, image: str) -> bool:
    return image in ctr(socket, "images", "ls", "-q").stdout.split()


def ensure_pause(socket: Path) -> None:
    """Imports the pause image into containerd unless it is there already."""
    if not has_image(socket, PAUSE_IMAGE):
        ctr(socket, "images", "import", str(pause_archive()))


def import_podman_image(socket: Path, image: str) -> None:
    """`podman save IMAGE | ctr -n k8s.io images import -`, through a temporary file."""
    with tempfile.TemporaryDirectory(prefix="config-refresh-image-") as tmp:
        archive = Path(tmp) / "image.tar"
        proc = subprocess.run(
            ["podman", "save", "--format", "docker-archive", "-o", str(archive), image],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ControlPlaneError(f"podman save {image} failed: {proc.stderr.strip()}")
        ctr(socket, "images", "import", str(archive))
