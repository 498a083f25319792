"""The rules of the local-delivery settings (issue 21): loopback only, memory-backed secrets, a sane hook.

Kept apart from `settings_rules` because they are one feature's: what the sidecar serves to the app in its
own pod over localhost HTTP and files, and how it tells the app that a change arrived.
"""

from __future__ import annotations

import signal
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from config_service.files import is_memory_backed

if TYPE_CHECKING:
    from config_service.settings import Settings


def _is_loopback(host: str) -> bool:
    from config_service.settings_rules import is_loopback_host

    return is_loopback_host(host)


def check_local_delivery(settings: Settings, fail: Callable[[str, str], None]) -> None:
    """Loopback only, a memory-backed directory for secrets, a valid hook; `fail(field, message)` raises."""
    if not _is_loopback(settings.local_http_host):
        fail(
            "local_http_host",
            f"{settings.local_http_host!r} is not a loopback address: the local HTTP API serves values "
            "without authentication and must never leave the pod; use 127.0.0.1 or ::1 (for a network "
            "read API use ConfigService over gRPC with authentication)",
        )
    if settings.local_http_default_wait_seconds > settings.local_http_max_wait_seconds:
        fail("local_http_default_wait_seconds", "must be in [0, local_http_max_wait_seconds]")
    files, secure = settings.local_files_dir, settings.local_files_secure_dir
    if files is not None and secure is not None:
        a, b = Path(files).resolve(), Path(secure).resolve()
        if a == b or a in b.parents or b in a.parents:
            fail("local_files_secure_dir", "must not be local_files_dir, inside it, or around it")
    if secure is not None and not settings.insecure_local_files_secure_on_disk:
        memory, fstype = is_memory_backed(Path(secure))
        if not memory:
            fail(
                "local_files_secure_dir",
                f"{secure} is on a {fstype} filesystem, not a memory-backed one (tmpfs): SecureStrings "
                "would reach a disk. Mount an emptyDir with medium: Memory there, or pass "
                "--insecure-local-files-secure-on-disk",
            )
    if settings.local_reload_url is not None:
        url = urllib.parse.urlsplit(settings.local_reload_url)
        if url.scheme != "http" or not url.hostname or not _is_loopback(url.hostname):
            fail(
                "local_reload_url",
                f"expected an http:// URL on a loopback address (the app in the same pod), got "
                f"{settings.local_reload_url!r}",
            )
    if settings.local_reload_signal is not None:
        if reload_signal(settings.local_reload_signal) is None:
            fail("local_reload_signal", f"unknown signal {settings.local_reload_signal!r}, e.g. SIGHUP")
        if (settings.local_reload_pid_file is None) == (settings.local_reload_process_name is None):
            fail(
                "local_reload_signal",
                "needs exactly one of local_reload_pid_file and local_reload_process_name",
            )
    elif settings.local_reload_pid_file is not None or settings.local_reload_process_name is not None:
        fail("local_reload_signal", "local_reload_pid_file/_process_name need local_reload_signal")


def reload_signal(name: str) -> signal.Signals | None:
    """The signal named `name` (SIGHUP, HUP or a number), or None."""
    text = name.strip().upper()
    if text.isdigit():
        try:
            return signal.Signals(int(text))
        except ValueError:
            return None
    if not text.startswith("SIG"):
        text = "SIG" + text
    signum = getattr(signal.Signals, text, None)
    return signum if isinstance(signum, signal.Signals) else None
