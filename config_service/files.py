"""Parameters as files, one per parameter, swapped atomically the way the kubelet swaps a ConfigMap volume.

Layout of a directory (`--local-files-dir`, and the same for `--local-files-secure-dir`):

    db_url -> ..data/db_url                    one symlink per top-level name, made once, never rewritten
    feature -> ..data/feature                  (a sub-path's first segment is a directory)
    ..data -> ..2026_12_05_19_54_35.k3j2x      the one symlink a swap flips, with a single rename(2)
    ..2026_12_05_19_54_35.k3j2x/db_url         the current generation, complete before the flip
    ..2026_12_05_19_54_35.k3j2x/feature/x
    ..2026_12_05_19_54_31.a8f0q/...            the previous generation, removed at the next swap

A reader that opens `db_url` resolves `..data` once and gets a whole generation, the old or the new one,
never a partial file and never a missing one (the previous generation stays on disk until the next swap,
so a reader that resolved the old link still finds its file). Apps that watch with inotify watch the
directory and react to `..data` (the same thing they do for a ConfigMap).

Name mapping: a parameter's file path is its name relative to the longest prefix this instance loads
(`/config-service/acme/orders/db_url` under the prefix `/config-service/acme/orders/` is `db_url`; under
`/config-service/` it is `acme/orders/db_url`, a sub-directory per segment); a name under no prefix keeps
its whole path without the leading slash. A name that cannot be placed is left out, logged and counted
(`config_service_local_files_skipped_total`): a segment that is `.` or starts with `..` (reserved for the
swap, and path traversal), a path whose parent is already a file (Parameter Store allows both `/p/a` and
`/p/a/b`; the shorter name wins), or two prefixes mapping two names to one path (the first in sorted order
wins). File contents are the value exactly, with no trailing newline added, as in a ConfigMap.

Modes: plain files 0444 in directories 0755; SecureString files 0400 in directories 0700, written only under
a memory-backed filesystem (tmpfs or ramfs, checked in /proc/mounts at start) unless the explicit opt-out
`--insecure-local-files-secure-on-disk` is given. The writer runs in a thread (blocking file I/O never on
the event loop) and always writes from the latest snapshot, so a burst of changes is one swap.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath

from config_service.cache import Entry, Snapshot, ValueType

log = logging.getLogger(__name__)

DATA_LINK = "..data"
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
PLAIN_FILE_MODE, PLAIN_DIR_MODE = 0o444, 0o755
SECURE_FILE_MODE, SECURE_DIR_MODE = 0o400, 0o700

Payload = dict[PurePosixPath, bytes]


def file_path(name: str, prefixes: Iterable[str]) -> PurePosixPath | None:
    """The relative file path of parameter `name` (see the module doc), or None when it has no safe one."""
    roots = sorted((p for p in prefixes if name.startswith(p) and len(name) > len(p)), key=len)
    relative = name[len(roots[-1]) :] if roots else name
    segments = [segment for segment in relative.split("/") if segment]
    if not segments or any(segment == "." or segment.startswith("..") for segment in segments):
        return None
    return PurePosixPath(*segments)


def payloads(
    entries: Iterable[Entry], prefixes: Iterable[str], *, on_skip: Callable[[str, str], None]
) -> tuple[Payload, Payload]:
    """The plain and the secure payload (path -> bytes) of the live `entries`; `on_skip(name, why)` for
    each one left out. Paths are placed in name order, so the outcome does not depend on hash order."""
    prefixes = tuple(prefixes)
    plain: Payload = {}
    secure: Payload = {}
    taken: dict[bool, tuple[set[PurePosixPath], set[PurePosixPath]]] = {
        False: (set(), set()),
        True: (set(), set()),
    }
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.deleted:
            continue
        path = file_path(entry.name, prefixes)
        if path is None:
            on_skip(entry.name, "its name maps to no safe file path ('.' or '..' segments)")
            continue
        is_secure = entry.value_type is ValueType.SECURE_STRING
        files, dirs = taken[is_secure]
        if path in files or path in dirs or any(parent in files for parent in path.parents):
            on_skip(entry.name, f"the file path {str(path)!r} is taken by another parameter")
            continue
        files.add(path)
        dirs.update(path.parents)
        (secure if is_secure else plain)[path] = entry.value.encode()
    return plain, secure


def mount_of(path: Path, mounts_file: Path = Path("/proc/mounts")) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount holding `path` (or its nearest existing ancestor)."""
    target = Path(path).absolute()
    while not target.exists() and target != target.parent:
        target = target.parent
    real = os.path.realpath(target)
    best = ("/", "unknown")
    for line in mounts_file.read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].encode().decode("unicode_escape")  # /proc/mounts escapes spaces as \040
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fields[2])
    return best


def is_memory_backed(path: Path, mounts_file: Path = Path("/proc/mounts")) -> tuple[bool, str]:
    """Whether `path` lives on tmpfs or ramfs, and the filesystem type found."""
    _point, fstype = mount_of(path, mounts_file)
    return fstype in MEMORY_FILESYSTEMS, fstype


class AtomicDir:
    """One directory of parameter files, swapped generation by generation through `..data`."""

    def __init__(self, root: Path, *, file_mode: int, dir_mode: int) -> None:
        self.root = Path(root)
        self._file_mode = file_mode
        self._dir_mode = dir_mode
        self.written: Payload | None = None

    def write(self, payload: Mapping[PurePosixPath, bytes]) -> bool:
        """Swap in `payload` unless it is what the directory already holds; returns whether it swapped."""
        if self.written is not None and dict(payload) == self.written:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        data_link = self.root / DATA_LINK
        previous = os.readlink(data_link) if data_link.is_symlink() else None
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
        generation = Path(tempfile.mkdtemp(prefix=stamp, dir=self.root))
        try:
            for relative, data in payload.items():
                self._write_file(generation, relative, data)
            os.chmod(generation, self._dir_mode)
            staging = self.root / (DATA_LINK + "_tmp")
            if staging.is_symlink() or staging.exists():
                staging.unlink()
            os.symlink(generation.name, staging)
            os.rename(staging, data_link)  # the swap: one atomic rename(2)
        except BaseException:
            self._remove(generation)
            raise
        tops = {relative.parts[0] for relative in payload}
        for top in sorted(tops):
            link = self.root / top
            if not link.is_symlink():
                if link.exists():
                    raise FileExistsError(f"{link} exists and is not one of our symlinks")
                os.symlink(f"{DATA_LINK}/{top}", link)
        for child in self.root.iterdir():
            if child.name.startswith(".."):
                continue
            if (
                child.is_symlink()
                and os.readlink(child).startswith(DATA_LINK + "/")
                and child.name not in tops
            ):
                child.unlink()
        for child in self.root.iterdir():
            old = child.name.startswith("..") and child.is_dir() and not child.is_symlink()
            if old and child.name not in (generation.name, previous):
                self._remove(child)
        self.written = dict(payload)
        return True

    def _write_file(self, generation: Path, relative: PurePosixPath, data: bytes) -> None:
        target = generation.joinpath(*relative.parts)
        for parent in reversed(relative.parents):
            if str(parent) == ".":
                continue
            directory = generation.joinpath(*parent.parts)
            if not directory.exists():
                directory.mkdir()
                os.chmod(directory, self._dir_mode)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(descriptor, data)
            os.fchmod(descriptor, self._file_mode)
        finally:
            os.close(descriptor)

    @staticmethod
    def _remove(path: Path) -> None:
        # A generation's directories are read-only for others and 0700/0755 for us; make sure before rmtree.
        for directory, subdirs, _files in os.walk(path):
            os.chmod(directory, 0o700)
            for sub in subdirs:
                os.chmod(os.path.join(directory, sub), 0o700)
        shutil.rmtree(path)


class FileWriter:
    """Keeps the plain and the secure directory in step with the cache (call `sync` from a thread)."""

    def __init__(
        self,
        *,
        plain_dir: Path | None,
        secure_dir: Path | None,
        prefixes: Iterable[str],
        on_skip: Callable[[str, str], None],
        on_swap: Callable[[str, str], None],
    ) -> None:
        self._prefixes = tuple(prefixes)
        self._plain = (
            AtomicDir(plain_dir, file_mode=PLAIN_FILE_MODE, dir_mode=PLAIN_DIR_MODE) if plain_dir else None
        )
        self._secure = (
            AtomicDir(secure_dir, file_mode=SECURE_FILE_MODE, dir_mode=SECURE_DIR_MODE)
            if secure_dir
            else None
        )
        self._on_skip = on_skip
        self._on_swap = on_swap
        self._skipped: set[str] = set()

    def sync(self, snapshot: Snapshot) -> bool:
        """Write what changed since the last sync; returns whether a directory was swapped."""
        skipped: set[str] = set()

        def skip(name: str, why: str) -> None:
            skipped.add(name)
            if name not in self._skipped:  # once per name, not at every swap
                self._on_skip(name, why)

        plain, secure = payloads(snapshot, self._prefixes, on_skip=skip)
        self._skipped = skipped
        swapped = False
        for label, directory, payload in (("plain", self._plain, plain), ("secure", self._secure, secure)):
            if directory is None:
                continue
            try:
                if directory.write(payload):
                    swapped = True
                    self._on_swap(label, "ok")
            except OSError:
                self._on_swap(label, "error")
                log.exception("file swap failed", extra={"directory": str(directory.root)})
        return swapped
