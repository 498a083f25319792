"""The one operator launcher: `config-refresh-operator` as it ships, for the demo, the bench and the tests.

The operator runs exactly as a user runs it, `config-refresh-operator --standalone --namespace NS` (or
`--peering NAME --priority N` for one replica of a peering), in a session of its own, with the control
plane's admin kubeconfig and the local AWS stack's endpoint and queue in its environment
(`operator_environment`), logging to a file. `OperatorProcess` starts it, waits until it
has indexed the routes (from then on the consumer runs), and kills, stops or restarts it with the same
settings, so a test can prove that rollouts survive a crash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.aws.local_aws import LocalAws
from devstack.controlplane import procs
from devstack.controlplane.plane import ControlPlane

READY_MARK = "ConfigRoute(s)"
"""The log line an operator writes once it has indexed the routes and kopf watches them."""

OPERATOR_IMAGE_ENV = {"MALLOC_ARENA_MAX": "2"}
"""What the operator image sets for the process besides the operator's own settings (Dockerfile, operator
stage), so a local operator's memory is the deployed one's: glibc gives each thread that allocates its
own arena by default (up to 8 per core), and the blocking pool's threads left freed memory spread
across them."""


class StackError(RuntimeError):
    """A part of the stack did not start or did not become ready; the message says which and why."""


def operator_executable() -> Path:
    """The `config-refresh-operator` console script of this interpreter's environment."""
    return Path(sys.executable).parent / "config-refresh-operator"


def free_port(host: str = "127.0.0.1") -> int:
    return procs.free_port(host)


def operator_environment(
    plane: ControlPlane, aws: LocalAws, extra: dict[str, str] | None = None, *, namespace: str
) -> dict[str, str]:
    """The operator's environment: admin kubeconfig, the local AWS endpoint and queue, a free metrics port,
    and, as a cluster admin grants it, the stack's prefix for routes in `namespace` (and nothing else).
    `extra` (CONFIG_REFRESH_POD_SYNC, tuning) is merged in last."""
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
            "CONFIG_REFRESH_ALLOWED_PREFIXES": json.dumps({namespace: [aws.prefix]}),
            **(extra or {}),
        }
    )
    return env


class OperatorProcess:
    """One `config-refresh-operator` process watching one namespace; restartable with the same settings."""

    def __init__(
        self,
        *,
        namespace: str,
        env: dict[str, str],
        log_path: Path,
        executable: Path | None = None,
        peering: tuple[str, int] | None = None,
    ) -> None:
        """`executable`: another build's `config-refresh-operator` (the bench compares two builds).
        `peering`: (KopfPeering name, priority) to run as one replica of a peering (`--peering NAME
        --priority N`, as the chart runs replicaCount > 1) instead of `--standalone`."""
        self.namespace = namespace
        self.peering = peering
        self.env = env
        self.log_path = log_path
        self.executable = executable or operator_executable()
        self.metrics_port = int(env["CONFIG_REFRESH_METRICS_PORT"])
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @classmethod
    def launch(
        cls,
        *,
        namespace: str,
        env: dict[str, str],
        log_path: Path,
        timeout: float = 90.0,
        executable: Path | None = None,
    ) -> OperatorProcess:
        """Start one and wait until it is ready; stopped again if it is not."""
        operator = cls(namespace=namespace, env=env, log_path=log_path, executable=executable)
        operator.start()
        try:
            operator.wait_ready(timeout)
        except BaseException:
            operator.stop(grace=5.0)
            raise
        return operator

    def start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            raise StackError("operator already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(self.executable), *self.peering_args(), "--namespace", self.namespace],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def peering_args(self) -> list[str]:
        if self.peering is None:
            return ["--standalone"]
        name, priority = self.peering
        return ["--peering", name, "--priority", str(priority)]

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until this run has indexed the routes and kopf watches (the consumer runs from then on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise StackError(f"the operator exited early ({self.returncode}):\n{self.log_tail()}")
            if READY_MARK in self.log_text(since_start=True):
                return
            time.sleep(0.1)
        raise StackError(f"the operator was not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        self._signal(signal.SIGKILL, grace=30.0)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM, SIGKILL after `grace` s (a clean stop waits out the 20 s long poll)."""
        self._signal(signal.SIGTERM, grace=grace)

    def _signal(self, signum: int, *, grace: float) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self, *, since_start: bool = False) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return data[self._log_offset if since_start else 0 :].decode("utf-8", "replace")

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no operator log)"
