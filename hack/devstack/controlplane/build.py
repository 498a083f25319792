"""Builds the test control plane (kube-apiserver, kubectl, etcd, helm) from Go modules, once per machine.

There is no Docker or kind on the machines this project is tested on, so the real binaries are compiled
from their Go modules at pinned versions. `k8s.io/kubernetes` cannot be `go install`ed (its go.mod replaces
every `k8s.io/*` staging module with a local path), so a throwaway wrapper module requires it and replaces
each staging module with the published `v0.x.y` that matches; the list is read from Kubernetes' own go.mod,
never hard-coded. etcd's server module is itself the `main` package of the etcd binary
(`go.etcd.io/etcd/server/v3`), built from a wrapper module the same way. Helm's go.mod has no replace
directives, so `go install helm.sh/helm/v3/cmd/helm@vX` works.

Binaries land in a per-user cache directory keyed by the three versions; a binary that is already there is
not rebuilt, so a second run takes well under a second. Only Go modules are downloaded, through whatever
GOPROXY the user's Go is configured with. Compile flags stay plain (no -trimpath) so that Go's build cache
is shared with any other build of the same modules on the machine; -ldflags only touch the link step.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "1.35.4"
ETCD_VERSION = "3.6.5"
HELM_VERSION = "3.22.0"

_WRAPPER_GO_VERSION = "1.25.0"


class ControlPlaneBuildError(RuntimeError):
    """The control plane binaries are missing and cannot be built (no Go, or a failed `go` command)."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the four executables a control plane needs."""

    kube_apiserver: Path
    kubectl: Path
    etcd: Path
    helm: Path

    def missing(self) -> list[Path]:
        """The binaries that do not exist (yet) as executable files."""
        return [p for p in self.all() if not (p.is_file() and os.access(p, os.X_OK))]

    def all(self) -> list[Path]:
        return [self.kube_apiserver, self.kubectl, self.etcd, self.helm]


def versions_key() -> str:
    return f"k8s-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_helm-{HELM_VERSION}"


def cache_root() -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/config-refresh/controlplane`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "config-refresh" / "controlplane"


def build_dir() -> Path:
    return cache_root() / versions_key()


def binaries(root: Path | None = None) -> Binaries:
    bin_dir = (root or build_dir()) / "bin"
    return Binaries(
        kube_apiserver=bin_dir / "kube-apiserver",
        kubectl=bin_dir / "kubectl",
        etcd=bin_dir / "etcd",
        helm=bin_dir / "helm",
    )


def _say(message: str) -> None:
    print(f"[controlplane] {message}", flush=True)


def _go_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    flags = env.get("GOFLAGS", "").split()
    if not any(f.startswith("-mod=") for f in flags):
        flags.append("-mod=mod")
    env["GOFLAGS"] = " ".join(flags)
    env.update(extra or {})
    return env


def _go(args: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    go = shutil.which("go")
    if go is None:
        raise ControlPlaneBuildError(_NO_GO_MESSAGE)
    proc = subprocess.run(
        [go, *args], cwd=cwd, env=env or _go_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-40:])
        raise ControlPlaneBuildError(
            f"`go {' '.join(args)}` failed in {cwd} (exit {proc.returncode}):\n{tail}"
        )
    return proc.stdout


_NO_GO_MESSAGE = (
    "the e2e tier needs Go (https://go.dev/doc/install, or a package manager: e.g. `apt-get install golang`)"
    " to build kube-apiserver, etcd, kubectl and helm from their Go modules; then run"
    " `.venv/bin/python hack/controlplane build`. `make test-fast` runs the unit and integration tiers only."
)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def kubernetes_staging_modules(version: str = KUBERNETES_VERSION, *, cwd: Path) -> list[str]:
    """The `k8s.io/*` modules k8s.io/kubernetes replaces with its ./staging copies, read from its go.mod."""
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@v{version}"], cwd=cwd))
    gomod = Path(info["GoMod"]).read_text()
    staged = re.findall(r"^\s*(k8s\.io/[A-Za-z0-9._-]+)\s+=>\s+\./staging/", gomod, flags=re.MULTILINE)
    if not staged:
        raise ControlPlaneBuildError(f"found no staging replace directives in {info['GoMod']}")
    return sorted(set(staged))


def _kubernetes_ldflags(version: str) -> str:
    major, minor, _ = version.split(".")
    pairs = {
        "gitVersion": f"v{version}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
    }
    xs = [f"-X {pkg}.{k}={v}" for pkg in _VERSION_PACKAGES for k, v in pairs.items()]
    return " ".join(["-s", "-w", *xs])


_VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")


def _wrapper(src: Path, *, require: str, replaces: Sequence[str], imports: Sequence[str]) -> None:
    src.mkdir(parents=True, exist_ok=True)
    lines = [f"module wrapper\n\ngo {_WRAPPER_GO_VERSION}\n\nrequire {require}\n"]
    lines += [f"replace {r}\n" for r in replaces]
    gomod = "\n".join(lines)
    # Keep a tidied go.mod/go.sum when the header did not change: tidy is then a no-op.
    stamp = src / "go.mod.in"
    if not stamp.exists() or stamp.read_text() != gomod:
        (src / "go.mod").write_text(gomod)
        (src / "go.sum").unlink(missing_ok=True)
        stamp.write_text(gomod)
    body = "".join(f'\t_ "{i}"\n' for i in imports)
    _write_if_changed(src / "tools.go", f"//go:build tools\n\npackage wrapper\n\nimport (\n{body})\n")


def _install(built: Path, target: Path) -> None:
    built.chmod(0o755)
    os.replace(built, target)


def build_kubernetes_commands(
    root: Path, commands: Mapping[str, str], *, say: Callable[[str], None] | None = None
) -> list[str]:
    """Build commands of k8s.io/kubernetes (name → package under it, e.g. "cmd/kubelet") into root/bin
    through a wrapper module in root/src/kubernetes (each staging module replaced with the matching
    `v0.x.y`); a binary already there is not rebuilt. Returns the names built. The control plane and the
    node (devstack.node.build) both build this way."""
    if all((root / "bin" / name).exists() for name in commands):
        return []
    src = root / "src" / "kubernetes"
    src.mkdir(parents=True, exist_ok=True)
    staged = kubernetes_staging_modules(cwd=src)
    minor = KUBERNETES_VERSION.split(".", 1)[1]
    _wrapper(
        src,
        require=f"k8s.io/kubernetes v{KUBERNETES_VERSION}",
        replaces=[f"{m} => {m} v0.{minor}" for m in staged],
        imports=[f"k8s.io/kubernetes/{pkg}" for pkg in commands.values()],
    )
    _go(["mod", "tidy"], cwd=src)
    ldflags = _kubernetes_ldflags(KUBERNETES_VERSION)
    done = []
    for name, pkg in commands.items():
        target = root / "bin" / name
        if target.exists():
            continue
        started = time.monotonic()
        tmp = root / "bin" / f".{name}.tmp"
        _go(["build", f"-ldflags={ldflags}", "-o", str(tmp), f"k8s.io/kubernetes/{pkg}"], cwd=src)
        _install(tmp, target)
        if say is not None:
            say(f"{name}: built in {time.monotonic() - started:.1f}s")
        done.append(name)
    return done


def build_kubernetes(root: Path) -> list[str]:
    """kube-apiserver and kubectl through a wrapper module around k8s.io/kubernetes."""
    return build_kubernetes_commands(root, {"kube-apiserver": "cmd/kube-apiserver", "kubectl": "cmd/kubectl"})


def build_etcd(root: Path) -> list[str]:
    """etcd: the root package of go.etcd.io/etcd/server/v3 is the etcd binary's `main`."""
    target = binaries(root).etcd
    if target.exists():
        return []
    src = root / "src" / "etcd"
    _wrapper(
        src,
        require=f"go.etcd.io/etcd/server/v3 v{ETCD_VERSION}",
        replaces=[],
        imports=["go.etcd.io/etcd/server/v3"],
    )
    _go(["mod", "tidy"], cwd=src)
    tmp = root / "bin" / ".etcd.tmp"
    _go(["build", "-ldflags=-s -w", "-o", str(tmp), "go.etcd.io/etcd/server/v3"], cwd=src)
    _install(tmp, target)
    return ["etcd"]


def build_helm(root: Path) -> list[str]:
    """helm: its go.mod has no replace directives, so `go install …@version` works."""
    target = binaries(root).helm
    if target.exists():
        return []
    gobin = root / "src" / "helm-gobin"
    gobin.mkdir(parents=True, exist_ok=True)
    ldflags = f"-s -w -X helm.sh/helm/v3/internal/version.version=v{HELM_VERSION}"
    _go(
        ["install", f"-ldflags={ldflags}", f"helm.sh/helm/v3/cmd/helm@v{HELM_VERSION}"],
        cwd=gobin,
        env=_go_env({"GOBIN": str(gobin)}),
    )
    _install(gobin / "helm", target)
    return ["helm"]


_STEPS: tuple[tuple[str, Callable[[Path], list[str]]], ...] = (
    (f"etcd v{ETCD_VERSION} (go.etcd.io/etcd/server/v3)", build_etcd),
    (f"kube-apiserver + kubectl v{KUBERNETES_VERSION} (k8s.io/kubernetes)", build_kubernetes),
    (f"helm v{HELM_VERSION} (helm.sh/helm/v3/cmd/helm)", build_helm),
)


def build_locked(
    root: Path, missing: Callable[[], list[Path]], build: Callable[[], None], *, no_go: str
) -> None:
    """Run `build` if `missing()` names any binary: Go must be there (else ControlPlaneBuildError with
    `no_go`), and two builds into one cache entry take turns on root/.build.lock (two test sessions
    building at once would rewrite the same wrapper modules). Raises if a binary is still missing."""
    if not missing():
        return
    if shutil.which("go") is None:
        names = ", ".join(p.name for p in missing())
        raise ControlPlaneBuildError(f"missing {names} in {root / 'bin'}; {no_go}")
    (root / "bin").mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            build()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    still = missing()
    if still:
        raise ControlPlaneBuildError(f"build finished but {', '.join(map(str, still))} missing")


def ensure_built(root: Path | None = None, *, quiet: bool = False) -> Binaries:
    """Builds whatever is missing and returns the binaries; raises ControlPlaneBuildError if it cannot."""
    root = root or build_dir()
    bins = binaries(root)
    if not bins.missing():
        if not quiet:
            _say(f"all binaries cached in {root / 'bin'}")
        return bins
    build_locked(root, bins.missing, lambda: _build_missing(root), no_go=_NO_GO_MESSAGE)
    return bins


def _build_missing(root: Path) -> None:
    started = time.monotonic()
    for label, step in _STEPS:
        t0 = time.monotonic()
        _say(f"{label}: checking ...")
        built = step(root)
        what = ", ".join(built) if built else "cached"
        _say(f"{label}: {what} ({time.monotonic() - t0:.1f}s)")
    _say(f"done in {time.monotonic() - started:.1f}s; binaries in {root / 'bin'}")
