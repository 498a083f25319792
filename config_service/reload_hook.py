"""The optional reload hook: tell the app in the pod that a change was applied (and the files swapped).

Two kinds, either or both: an HTTP POST to a loopback URL of the app (`--local-reload-url`), with the body
`{"changed": [names]}`; or a signal (`--local-reload-signal SIGHUP`) to the process whose pid is in a file
(`--local-reload-pid-file`) or to every process with a given name (`--local-reload-process-name`, matched
against /proc/PID/comm and the base name of argv[0]; in a pod this needs `shareProcessNamespace: true`).

The hook never holds up the cache or the file swap: `notify` only records the names and returns; one task
runs the hook, and changes that arrive while it runs are coalesced into its next run. A failure (refused
connection, a status of 400 or more, a timeout, no such process) is logged and counted in
`config_service_reload_hooks_total{kind, result="error"}`; the change stays applied either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

import aiohttp

from config_service.metrics import Metrics

log = logging.getLogger(__name__)


def find_processes(name: str, proc: Path = Path("/proc")) -> list[int]:
    """Pids of the processes named `name` (comm, or the base name of argv[0]), this one excepted."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue  # gone, or not ours to read
        if name in (comm, os.path.basename(argv0)):
            found.append(int(entry.name))
    return sorted(found)


def pids_from_file(path: Path) -> list[int]:
    """The pid in `path` (first line); ValueError when it holds none."""
    text = path.read_text().strip().split("\n", 1)[0].strip()
    if not text.isdigit():
        raise ValueError(f"{path} holds no pid")
    return [int(text)]


class ReloadHook:
    """Runs the configured hook after applied changes, coalescing the ones that arrive meanwhile."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        url: str | None = None,
        signum: signal.Signals | None = None,
        pid_file: Path | None = None,
        process_name: str | None = None,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._metrics = metrics
        self._url = url
        self._signum = signum
        self._pid_file = pid_file
        self._process_name = process_name
        self._timeout = timeout_seconds
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def notify(self, names: set[str] | tuple[str, ...]) -> None:
        """Record an applied change; starts the hook unless it is running (then it runs again after)."""
        self._pending.update(names)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="reload-hook")

    async def idle(self) -> None:
        """Wait until no hook run is in progress or pending (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Stop running the hook and release the HTTP session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while self._pending:
            names, self._pending = sorted(self._pending), set()
            if self._url is not None:
                await self._post(self._url, names)
            if self._signum is not None:
                await self._signal(self._signum)

    async def _post(self, url: str, names: list[str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        try:
            async with self._session.post(url, json={"changed": names}) as response:
                await response.read()
                if response.status >= 400:
                    raise RuntimeError(f"the app answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as error:
            self._metrics.reload_hooks.labels(kind="http", result="error").inc()
            log.warning("reload hook failed", extra={"kind": "http", "url": url, "error": str(error)})
            return
        self._metrics.reload_hooks.labels(kind="http", result="ok").inc()
        log.info("reload hook", extra={"kind": "http", "url": url, "parameters": len(names)})

    async def _signal(self, signum: signal.Signals) -> None:
        try:
            if self._pid_file is not None:
                pids = await asyncio.to_thread(pids_from_file, self._pid_file)
            else:
                assert self._process_name is not None
                pids = await asyncio.to_thread(find_processes, self._process_name)
            if not pids:
                raise ProcessLookupError(f"no process named {self._process_name!r}")
            for pid in pids:
                os.kill(pid, signum)
        except (OSError, ValueError) as error:
            self._metrics.reload_hooks.labels(kind="signal", result="error").inc()
            log.warning("reload hook failed", extra={"kind": "signal", "error": str(error)})
            return
        self._metrics.reload_hooks.labels(kind="signal", result="ok").inc()
        log.info("reload hook", extra={"kind": "signal", "signal": signum.name, "pids": pids})
