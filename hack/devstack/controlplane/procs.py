"""Child processes of the test control plane: start with a log file, wait until ready, stop for sure.

Each server runs in its own session (so a `hack/controlplane up` survives the shell that started it, and a
terminal's Ctrl-C reaches pytest first, whose teardown then stops the servers in order). Readiness is a
probe of the server's own health endpoint, polled until it answers; a server that exits while we wait
fails at once with the tail of its log instead of after a timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


class ControlPlaneError(RuntimeError):
    """A control-plane server did not start, did not become ready, or is not running."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports free on `host` right now.

    The probes stay bound until all are chosen: probing one port at a time can give the same port twice
    (the kernel may hand a just-released port out again); a config-service instance whose refresh and
    metrics ports coincided died at start in a 50-instance soak.
    """
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((host, 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file (empty if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def spawn(
    argv: Sequence[str], *, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts `argv` in its own session with stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n==== {time.strftime('%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def wait_until(
    probe: Callable[[], bool],
    *,
    what: str,
    process: subprocess.Popen[bytes] | None,
    log_path: Path,
    timeout: float,
) -> None:
    """Polls `probe` until it returns True; fails early if `process` exits, with the log's tail."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if process is not None and process.poll() is not None:
            raise ControlPlaneError(
                f"{what} exited with code {process.returncode} before it was ready; "
                f"log {log_path}:\n{tail(log_path)}"
            )
        if probe():
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(
                f"{what} not ready after {timeout:.0f}s; log {log_path}:\n{tail(log_path)}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def http_ok(url: str, *, context: ssl.SSLContext | None = None, expect: bytes | None = None) -> bool:
    """True when GET `url` answers 200 (and its body contains `expect`, if given)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:  # noqa: S310 (fixed http/https URL)
            body: bytes = resp.read()
            return resp.status == 200 and (expect is None or expect in body)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def stop(process: subprocess.Popen[bytes] | None, *, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; always reaps the child."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def pid_runs(pid: int, executable: Path) -> bool:
    """True when `pid` is alive and runs `executable` (guards `down` against a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0] == str(executable).encode()


def stop_pid(pid: int, executable: Path, *, timeout: float = 15.0) -> bool:
    """Stops a process by pid that another Python process started; False if it was not running."""
    if not pid_runs(pid, executable):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_runs(pid, executable):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.1)
    return True
