"""A detached stack (`make demo-up`): its `describe()` record, and stopping it from another process with it.

Every pid is checked against its command line before it is signalled, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.controlplane.procs import stop_pid
from devstack.stack.operator import operator_executable

if TYPE_CHECKING:
    from devstack.stack.builder import Stack


def describe(stack: Stack) -> dict[str, Any]:
    """What another process needs to use or stop `stack` (the demo-up state file)."""
    return {
        "workdir": str(stack.workdir),
        "namespace": stack.namespace,
        "kubeconfig": str(stack.control_plane.kubeconfig),
        "server": stack.control_plane.server,
        "controlplane": stack.control_plane.state(),
        "aws": stack.local_aws.describe(),
        "operator": {
            "pid": stack.operator.pid,
            "executable": str(operator_executable()),
            "log": str(stack.operator.log_path),
            "metrics": f"http://127.0.0.1:{stack.operator.metrics_port}/metrics",
        },
        "instances": [
            {
                "id": instance.instance_id,
                "pid": instance.pid,
                "refresh": instance.refresh_address,
                "config": instance.config_address,
                "log": str(instance.log_path),
            }
            for instance in stack.fleet
        ],
        "python": sys.executable,
    }


def stop_described(description: dict[str, Any]) -> list[str]:
    """Stop a detached stack from its `describe()` record; returns what was stopped (never raises)."""
    stopped: list[str] = []
    operator = description.get("operator") or {}
    if operator.get("pid") and _stop_python_pid(int(operator["pid"]), "config-refresh-operator"):
        stopped.append(f"operator (pid {operator['pid']})")
    count = sum(
        1
        for item in description.get("instances", [])
        if item.get("pid") and _stop_python_pid(int(item["pid"]), "config_service")
    )
    if count:
        stopped.append(f"{count} config-service processes")
    aws = description.get("aws") or {}
    if aws.get("pid") and _stop_python_pid(int(aws["pid"]), "devstack.aws.local_aws"):
        stopped.append(f"local AWS (pid {aws['pid']})")
    plane = description.get("controlplane") or {}
    for name in ("kube-apiserver", "etcd"):
        pid = (plane.get("pids") or {}).get(name)
        executable = (plane.get("executables") or {}).get(name)
        if pid and executable and stop_pid(int(pid), Path(executable)):
            stopped.append(f"{name} (pid {pid})")
    workdir = description.get("workdir")
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return stopped


def _stop_python_pid(pid: int, marker: str, timeout: float = 10.0) -> bool:
    """SIGTERM then SIGKILL `pid`, only if its command line contains `marker` (no recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if marker not in cmdline:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    return True
