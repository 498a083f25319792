"""Child processes of the test control plane: start with a log file, wait until ready, stop for sure.

Each server runs in its own session (so a `hack/controlplane up` survives the shell that started it, and a
terminal's Ctrl-C reaches pytest first, whose teardown then stops the servers in order). Readiness is a
probe of the server's own health endpoint, polled until it answers; a server that exits while we wait
fails at once with the tail of its log instead of after a timeout.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


class ControlPlaneError(RuntimeError):
    """A control-plane server did not start, did not become ready, or is not running."""


FREE_PORT_RANGE = (10000, 32767)
"""Where free ports are chosen: below Linux's default ephemeral range (32768-60999), from which the kernel
picks the local port of every outgoing connection. A port chosen there could be taken by any process's
connect() between the choice and the server's bind (a second operator replica's metrics port was, in CI)."""

HANDED_OUT_SECONDS = 300.0
"""How long a port handed out stays reserved for the server it was chosen for (a fleet of 300 instances
binds its last ports about 90 s after choosing them); after that it may be chosen again."""

_handed_out: collections.OrderedDict[tuple[str, int], float] = collections.OrderedDict()  # oldest first
_handed_out_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports free on `host` right now, never one this process handed out
    in the last HANDED_OUT_SECONDS.

    The servers that get them bind them later, so two calls in a row must not give the same port (a
    config-service instance whose refresh and metrics ports coincided died at start in a 50-instance soak);
    and they come from FREE_PORT_RANGE, outside the range outgoing connections take their ports from.
    """
    low, high = FREE_PORT_RANGE
    chosen: list[int] = []
    with _handed_out_lock:
        expired = time.monotonic() - HANDED_OUT_SECONDS
        while _handed_out and next(iter(_handed_out.values())) < expired:
            _handed_out.popitem(last=False)
        attempts = 0
        while len(chosen) < count:
            attempts += 1
            if attempts > 20 * count + 1000:
                raise ControlPlaneError(f"no {count} free ports on {host} in {low}-{high}")
            port = random.randint(low, high)
            if (host, port) in _handed_out or port in chosen:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((host, port))
                except OSError:
                    continue
            chosen.append(port)
        now = time.monotonic()
        for port in chosen:
            _handed_out[(host, port)] = now
    return chosen


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
