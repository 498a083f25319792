"""The two example apps of issue 21 (Go long poll, Node file watch) as processes, for tests and bench.

`go_longpoll_binary()` builds examples/go-longpoll with the machine's `go` (standard library only, no
module download), cached under ~/.cache/config-refresh/examples by a hash of its sources. `AppProcess`
runs a command and records each stdout line with the monotonic time it arrived, so a caller waits for the
line it needs (`wait_line`) instead of sleeping. `http_get` is a small urllib client for the local HTTP
API. Both `go` and `node` are required: a missing one raises, naming it (never a skip).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from devstack.controlplane.procs import free_ports
from devstack.services.fleet import AwsEndpoint, Instance, ServiceFleet

ROOT = Path(__file__).resolve().parents[3]
GO_LONGPOLL = ROOT / "examples" / "go-longpoll"
NODE_FILEWATCH = ROOT / "examples" / "node-filewatch" / "watch.js"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "config-refresh" / "examples"


def require(tool: str) -> str:
    """The path of `tool`, or RuntimeError naming it."""
    found = shutil.which(tool)
    if found is None:
        raise RuntimeError(f"required tool {tool!r} is not on PATH (the any-language examples need it)")
    return found


def go_longpoll_binary() -> Path:
    """The built Go example, from the cache when its sources did not change."""
    digest = hashlib.sha256()
    for source in sorted(GO_LONGPOLL.glob("*")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    binary = CACHE / f"go-longpoll-{digest.hexdigest()[:16]}"
    if binary.is_file():
        return binary
    go = require("go")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(f".{os.getpid()}.tmp")
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "", "CGO_ENABLED": "0"}
    subprocess.run([go, "build", "-o", str(partial), "."], cwd=GO_LONGPOLL, env=env, check=True)
    partial.rename(binary)
    return binary


def node_filewatch_command() -> list[str]:
    """How to run the Node example."""
    return [require("node"), str(NODE_FILEWATCH)]


class AppProcess:
    """A process whose stdout lines are kept with their arrival times."""

    def __init__(self, command: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> None:
        self.lines: list[tuple[float, str]] = []
        self._changed = threading.Condition()
        self._log = log_path.open("ab")
        self._process = subprocess.Popen(
            list(command),
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The process id."""
        return int(self._process.pid)

    @property
    def running(self) -> bool:
        """The process has not exited."""
        return self._process.poll() is None

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            arrived = time.monotonic()
            self._log.write(raw)
            with self._changed:
                self.lines.append((arrived, line))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_line(
        self, match: Callable[[str], bool], *, timeout: float = 30.0, after: float = 0.0
    ) -> tuple[float, str]:
        """The first line that arrived at or after `after` (monotonic) and matches; raises on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for arrived, line in self.lines:
                    if arrived >= after and match(line):
                        return arrived, line
                if self._process.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"the app exited with {self._process.returncode}: {self.lines[-5:]}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching line in {timeout} s; last lines: {self.lines[-5:]}")
                self._changed.wait(remaining)

    def close(self) -> None:
        """Stop the process."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._reader.join(10)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._log.close()


def http_get(
    url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 60.0
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET on an http:// URL; HTTP errors are answers, not exceptions."""
    if not url.startswith("http://"):
        raise ValueError(f"expected an http:// URL, got {url!r}")
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - http:// checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def start_local_instance(
    service_fleet: Callable[..., ServiceFleet],
    local_aws: AwsEndpoint,
    *,
    http: bool = True,
    extra_args: Sequence[str] = (),
    timeout: float = 120.0,
) -> tuple[Instance, str]:
    """One config-service with the local HTTP API on a free port of its loopback address (when `http`)
    and `extra_args`; waits for SERVING. Returns the instance and the HTTP base URL."""
    fleet = service_fleet(1, local_aws=local_aws, start=False)
    instance = fleet[0]
    args = list(extra_args)
    base = ""
    if http:
        (port,) = free_ports(1, instance.host)
        args += ["--local-http-host", instance.host, "--local-http-port", str(port)]
        base = f"http://{instance.host}:{port}"
    instance.start(extra_args=args)
    instance.wait_serving(timeout)
    return instance, base
