"""A real Kubernetes control plane for tests: etcd + kube-apiserver on 127.0.0.1, RBAC on, no kubelet.

An operator tested against mocks passes with a non-structural schema, a wrong printer-column path or a
missing RBAC verb; the API server rejects all three. So tests run against the real kube-apiserver and etcd
(built by `controlplane_build` from Go modules), started the way controller-runtime's envtest starts them:
etcd with a throwaway data dir, kube-apiserver with fresh certificates, `--authorization-mode=RBAC`, an
admin client certificate in `system:masters`, and a ServiceAccount signing key and issuer so that the
TokenRequest API issues tokens that authenticate. The ServiceAccount admission plugin is disabled because
no controller-manager creates the `default` ServiceAccount it would insist on.

What is absent matters to tests: no kubelet (pods are plain objects; a test patches `pods/status` to give
one an IP and a Ready condition), no scheduler, no controller-manager (no default ServiceAccount, no
garbage collection of owned objects, namespaces stay Terminating forever). See
docs/testing-control-plane.md.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from devstack.controlplane import build as controlplane_build
from devstack.controlplane import pki as controlplane_pki
from devstack.controlplane.build import Binaries
from devstack.controlplane.procs import (
    ControlPlaneError,
    free_ports,
    http_ok,
    spawn,
    stop,
    stop_pid,
    tail,
    wait_until,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["CommandError", "ControlPlane", "ControlPlaneError", "down", "running_kubeconfig", "up"]

REPO_ROOT = Path(__file__).resolve().parents[3]
CRDS_DIR = REPO_ROOT / "crds"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
READY_TIMEOUT = 180.0
_START_ATTEMPTS = 3


class CommandError(subprocess.CalledProcessError):
    """A kubectl/helm command failed; unlike CalledProcessError, its message includes stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr:\n{self.stderr}\nstdout:\n{self.output}"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


class ControlPlane:
    """A running etcd + kube-apiserver pair and the clients that talk to it.

    Start one with `ControlPlane.start()` and stop it with `stop()` (or use it as a context manager).
    `kubeconfig` holds the admin identity (cluster-admin through `system:masters`).
    """

    def __init__(self, *, binaries: Binaries, workdir: Path, detached: bool = False) -> None:
        self.binaries = binaries
        self.workdir = workdir
        self.detached = detached
        self.pki = controlplane_pki.generate(workdir / "pki")
        # one call, so the three are distinct (probing one at a time can hand out the same port twice)
        self.etcd_port, self.etcd_peer_port, self.apiserver_port = free_ports(3)
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubeconfig = workdir / "kubeconfig"
        self.log_paths: dict[str, Path] = {
            "etcd": workdir / "logs" / "etcd.log",
            "kube-apiserver": workdir / "logs" / "kube-apiserver.log",
        }
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._crds_applied = False
        self._write_admin_kubeconfig()

    # ----------------------------------------------------------------------------------------- lifecycle

    @classmethod
    def start(
        cls,
        *,
        binaries: Binaries | None = None,
        workdir: Path | None = None,
        detached: bool = False,
    ) -> ControlPlane:
        """Builds the binaries if needed, starts etcd then kube-apiserver, and waits for /readyz."""
        bins = binaries or controlplane_build.ensure_built(quiet=True)
        for attempt in range(1, _START_ATTEMPTS + 1):
            directory = workdir or Path(tempfile.mkdtemp(prefix="config-refresh-controlplane-"))
            plane = cls(binaries=bins, workdir=directory, detached=detached)
            if not detached:
                atexit.register(plane.stop)
            try:
                plane._start_etcd()
                plane.start_apiserver()
                return plane
            except BaseException as exc:
                plane.stop()
                atexit.unregister(plane.stop)
                # Free ports are picked before the servers bind them; another job can take one meanwhile.
                retry = isinstance(exc, ControlPlaneError) and "address already in use" in str(exc)
                if not retry or workdir is not None or attempt == _START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self, *, keep_files: bool = False) -> None:
        """Stops kube-apiserver then etcd, and removes the temporary directory unless `keep_files`."""
        stop(self._apiserver)
        stop(self._etcd)
        self._apiserver = self._etcd = None
        if not keep_files and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _start_etcd(self) -> None:
        data = self.workdir / "etcd-data"
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        argv = [
            str(self.binaries.etcd),
            "--name=controlplane",
            f"--data-dir={data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=controlplane={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]
        self._etcd = spawn(argv, log_path=self.log_paths["etcd"])
        wait_until(
            lambda: http_ok(f"{client}/health", expect=b'"health":"true"'),
            what="etcd",
            process=self._etcd,
            log_path=self.log_paths["etcd"],
            timeout=READY_TIMEOUT,
        )

    def _apiserver_argv(self) -> list[str]:
        p = self.pki
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--secure-port={self.apiserver_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--tls-cert-file={p.serving_cert}",
            f"--tls-private-key-file={p.serving_key}",
            f"--client-ca-file={p.ca_cert}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={p.sa_public_key}",
            f"--service-account-signing-key-file={p.sa_private_key}",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]

    def start_apiserver(self) -> None:
        """(Re)starts kube-apiserver on the same port and certificates; etcd's state is kept."""
        if self._apiserver is not None and self._apiserver.poll() is None:
            raise ControlPlaneError("kube-apiserver is already running")
        self._apiserver = spawn(self._apiserver_argv(), log_path=self.log_paths["kube-apiserver"])
        context = self._ssl_context()
        wait_until(
            lambda: http_ok(f"{self.server}/readyz", context=context, expect=b"ok"),
            what="kube-apiserver",
            process=self._apiserver,
            log_path=self.log_paths["kube-apiserver"],
            timeout=READY_TIMEOUT,
        )

    def stop_apiserver(self) -> None:
        """Stops kube-apiserver only (etcd keeps running): clients see connection refused until restart."""
        stop(self._apiserver)
        self._apiserver = None

    @property
    def pids(self) -> dict[str, int]:
        procs = {"etcd": self._etcd, "kube-apiserver": self._apiserver}
        return {name: proc.pid for name, proc in procs.items() if proc is not None and proc.poll() is None}

    def log_tails(self, lines: int = 40) -> str:
        """The last lines of each server's log, for a failing test's report."""
        return "\n".join(f"---- {name}: {path}\n{tail(path, lines)}" for name, path in self.log_paths.items())

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    # ------------------------------------------------------------------------------------------- clients

    def _write_kubeconfig(self, path: Path, *, user: dict[str, str], name: str) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "config-refresh-test",
                    "cluster": {"server": self.server, "certificate-authority-data": _b64(self.pki.ca_cert)},
                }
            ],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": "config-refresh-test", "user": name}}],
            "current-context": name,
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def _write_admin_kubeconfig(self) -> None:
        user = {
            "client-certificate-data": _b64(self.pki.admin_cert),
            "client-key-data": _b64(self.pki.admin_key),
        }
        self._write_kubeconfig(self.kubeconfig, user=user, name="admin")

    def kubeconfig_for_token(self, token: str) -> Path:
        """A kubeconfig that authenticates with `token` (e.g. a ServiceAccount token) instead of admin."""
        digest = hashlib.sha256(token.encode()).hexdigest()[:12]
        path = self.workdir / f"kubeconfig-token-{digest}"
        return self._write_kubeconfig(path, user={"token": token}, name=f"token-{digest}")

    def _run(
        self,
        argv: Sequence[str],
        *,
        check: bool,
        input: str | None,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, list(argv), proc.stdout, proc.stderr)
        return proc

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Runs kubectl as admin (or with `kubeconfig`); raises CommandError (with stderr) if `check`."""
        argv = [
            str(self.binaries.kubectl),
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        return self._run(argv, check=check, input=input)

    def helm(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Runs helm as admin, with its cache/config/data dirs inside the control plane's directory."""
        home = self.workdir / "helm"
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
        )
        argv = [str(self.binaries.helm), f"--kubeconfig={self.kubeconfig}", *args]
        return self._run(argv, check=check, input=input, env=env, timeout=timeout)

    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        """A `kubernetes.client.ApiClient` for the admin identity (or for `kubeconfig`)."""
        from kubernetes import config  # imported here: only tests that use it pay for the import

        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig)
        )
        return client

    def apply_crds(self, directory: Path = CRDS_DIR) -> list[str]:
        """`kubectl apply -f crds/` (top level only, not samples/) and waits until each is Established."""
        applied = self.kubectl("apply", "-f", str(directory), "-o", "name").stdout.split()
        crds = [name for name in applied if name.startswith("customresourcedefinition")]
        if crds:
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
        self._crds_applied = True
        return applied

    def ensure_crds(self) -> None:
        """apply_crds() once per control plane."""
        if not self._crds_applied:
            self.apply_crds()

    def create_namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        return name

    def issue_token(
        self,
        namespace: str,
        service_account: str,
        audiences: Sequence[str] = (),
        ttl: int = 3600,
        *,
        create: bool = True,
    ) -> str:
        """A ServiceAccount token from the TokenRequest API (the ServiceAccount is created if `create`)."""
        if create:
            manifest = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": service_account, "namespace": namespace},
            }
            self.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        args = ["create", "token", service_account, "-n", namespace, f"--duration={ttl}s"]
        args += [f"--audience={a}" for a in audiences]
        return self.kubectl(*args).stdout.strip()

    # ----------------------------------------------------------------------------------------- state file

    def state(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "pids": self.pids,
            "executables": {
                "etcd": str(self.binaries.etcd),
                "kube-apiserver": str(self.binaries.kube_apiserver),
            },
            "logs": {k: str(v) for k, v in self.log_paths.items()},
        }


STATE_FILE_ENV = "CONFIG_REFRESH_CONTROLPLANE_STATE"


def _state_file() -> Path:
    """Where `up` records the running control plane; $CONFIG_REFRESH_CONTROLPLANE_STATE overrides it."""
    override = os.environ.get(STATE_FILE_ENV)
    return Path(override) if override else controlplane_build.cache_root() / "run" / "state.json"


def _read_state() -> dict[str, Any] | None:
    path = _state_file()
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def _alive(state: dict[str, Any]) -> bool:
    from devstack.controlplane.procs import pid_runs

    return all(pid_runs(pid, Path(state["executables"][name])) for name, pid in state["pids"].items())


def up() -> ControlPlane:
    """Starts a detached control plane for `hack/controlplane up` and records it in the state file."""
    state = _read_state()
    if state is not None and _alive(state):
        raise ControlPlaneError(
            f"a control plane is already running ({state['server']}); "
            f"export KUBECONFIG={state['kubeconfig']}, or `hack/controlplane down` first"
        )
    bins = controlplane_build.ensure_built()
    plane = ControlPlane.start(binaries=bins, detached=True)
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plane.state(), indent=2))
    return plane


def running_kubeconfig() -> Path:
    """The admin kubeconfig of the control plane started by `up` (fails if none is running)."""
    state = _read_state()
    if state is None or not _alive(state):
        raise ControlPlaneError("no control plane is running; start one with `hack/controlplane up`")
    return Path(state["kubeconfig"])


def down() -> str:
    """Stops the control plane started by `up` and removes its files and the state file."""
    state = _read_state()
    if state is None:
        return "no control plane was running"
    stopped = []
    for name in ("kube-apiserver", "etcd"):
        pid = state["pids"].get(name)
        if pid is not None and stop_pid(pid, Path(state["executables"][name])):
            stopped.append(f"{name} (pid {pid})")
    shutil.rmtree(state["workdir"], ignore_errors=True)
    _state_file().unlink(missing_ok=True)
    return f"stopped {', '.join(stopped) or 'nothing (already gone)'}; removed {state['workdir']}"
