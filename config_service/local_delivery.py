"""Local delivery (issue 21): the parts that hand the cache to an app of any language in the same pod.

`LocalDelivery.from_settings` builds what the settings turn on, all optional and all independent: the
loopback HTTP API with its long poll (config_service.http_api), the parameter files swapped atomically
(config_service.files) and the reload hook (config_service.reload_hook). They hear of applied changes
through one `ChangeFeed` on the service's loop. One worker task turns a change into a file swap (in a
thread) and then runs the hook, so the hook fires once the files hold the new value; the long poll answers
straight from the feed, without waiting for either. Nothing here ever blocks a refresh.

Order at start: the HTTP port binds with the gRPC ports (it answers 503 until SERVING); after the bootstrap
the files are written once, before the instance reports SERVING, so a pod that is Ready has its files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from config_service.cache import ConfigCache
from config_service.changes import ChangeFeed
from config_service.files import FileWriter
from config_service.http_api import HttpApi
from config_service.lifecycle import Lifecycle
from config_service.metrics import Metrics
from config_service.reload_hook import ReloadHook
from config_service.settings import Settings, reload_signal

log = logging.getLogger(__name__)


@dataclass
class LocalDelivery:
    """The enabled parts; `start` binds HTTP, `ready` writes the files and starts the worker, `stop` ends."""

    settings: Settings
    cache: ConfigCache
    feed: ChangeFeed
    http: HttpApi | None = None
    files: FileWriter | None = None
    hook: ReloadHook | None = None
    http_port: int | None = None
    metrics: Metrics | None = None
    _pending: set[str] = field(default_factory=set)
    _first_pending_at: float | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, cache: ConfigCache, lifecycle: Lifecycle, metrics: Metrics
    ) -> LocalDelivery | None:
        """The parts the settings enable, or None when local delivery is off altogether."""
        http_on = settings.local_http_port is not None
        files_on = settings.local_files_dir is not None or settings.local_files_secure_dir is not None
        hook_on = settings.local_reload_url is not None or settings.local_reload_signal is not None
        if not (http_on or files_on or hook_on):
            return None
        feed = ChangeFeed(cache, asyncio.get_running_loop())
        delivery = cls(settings=settings, cache=cache, feed=feed, metrics=metrics)
        if http_on:
            delivery.http = HttpApi(
                cache=cache,
                feed=feed,
                lifecycle=lifecycle,
                metrics=metrics,
                prefixes=settings.prefixes,
                secure_strings=settings.local_http_secure_strings,
                default_wait_seconds=settings.local_http_default_wait_seconds,
                max_wait_seconds=settings.local_http_max_wait_seconds,
            )
        if files_on:

            def skipped(name: str, why: str) -> None:
                metrics.local_files_skipped.inc()
                log.warning("parameter not written to a file", extra={"parameter": name, "reason": why})

            delivery.files = FileWriter(
                plain_dir=settings.local_files_dir,
                secure_dir=settings.local_files_secure_dir,
                prefixes=settings.prefixes,
                on_skip=skipped,
                on_swap=lambda directory, result: metrics.local_file_swaps.labels(
                    directory=directory, result=result
                ).inc(),
            )
        if hook_on:
            delivery.hook = ReloadHook(
                metrics=metrics,
                url=settings.local_reload_url,
                signum=reload_signal(settings.local_reload_signal) if settings.local_reload_signal else None,
                pid_file=settings.local_reload_pid_file,
                process_name=settings.local_reload_process_name,
                timeout_seconds=settings.local_reload_timeout_seconds,
            )
        feed.subscribe(delivery._changed)
        return delivery

    def _changed(self, names: tuple[str, ...]) -> None:
        self._pending.update(names)
        if self._first_pending_at is None:
            self._first_pending_at = self.feed.applied_at
        self._wake.set()

    async def start(self) -> None:
        """Bind the HTTP API (it answers 503 until the instance is SERVING)."""
        if self.http is not None:
            self.http_port = await self.http.start(
                self.settings.local_http_host, self.settings.local_http_port or 0
            )

    async def ready(self) -> None:
        """After the bootstrap: write the files once (before SERVING), then follow every change."""
        self._pending.clear()
        self._first_pending_at = None
        self._wake.clear()
        if self.files is not None:
            await asyncio.to_thread(self.files.sync, self.cache.snapshot)
        self._task = asyncio.create_task(self._follow(), name="local-delivery")

    async def _follow(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            names, self._pending = self._pending, set()
            since, self._first_pending_at = self._first_pending_at, None
            if self.files is not None:
                try:
                    swapped = await asyncio.to_thread(self.files.sync, self.cache.snapshot)
                except Exception:
                    log.exception("file sync failed")
                else:
                    if swapped and since is not None and self.metrics is not None:
                        # From the oldest change this swap carries: the worst wait in the batch.
                        elapsed = time.monotonic() - since
                        self.metrics.local_delivery_latency.labels(path="files").observe(elapsed)
            if self.hook is not None:
                self.hook.notify(names)

    async def stop(self) -> None:
        """End long polls and the worker; release the hook's session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.http is not None:
            await self.http.stop()
        if self.hook is not None:
            await self.hook.close()
