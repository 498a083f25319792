"""The parameter files of a real config-service process (issue 21): the kubelet-style layout, the ..data
flip, atomic swaps under a concurrent reader, deletes, modes, and the tmpfs rule for SecureStrings."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from config_service.files import is_memory_backed
from configrefresh.v1 import refresh_service_pb2 as pb
from devstack.aws.local_aws import LocalAws
from devstack.fixtures.services import FleetFactory
from devstack.services.fleet import Instance, service_command
from devstack.services.local_apps import start_local_instance


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A fresh directory on /dev/shm (tmpfs), removed afterwards."""
    assert is_memory_backed(Path("/dev/shm"))[0], "this machine's /dev/shm is not tmpfs"
    path = Path(tempfile.mkdtemp(prefix="cfg-secure-", dir="/dev/shm"))
    try:
        yield path
    finally:
        for directory, subdirs, _files in os.walk(path):
            os.chmod(directory, 0o700)
            for sub in subdirs:
                os.chmod(os.path.join(directory, sub), 0o700)
        shutil.rmtree(path)


def push(instance: Instance, name: str, version: int, value: str, *, delete: bool = False) -> None:
    change = pb.RefreshRequest(
        refresh_id="it",
        parameter_name=name,
        version=version,
        operation=pb.OPERATION_DELETE if delete else pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE,
        value="" if delete else value,
    )
    change.last_modified.FromDatetime(datetime.now(UTC) + timedelta(minutes=version))
    assert instance.refresh(change).result == pb.REFRESH_RESULT_APPLIED


def wait_for(check: Callable[[], object], timeout: float = 30.0) -> None:
    """Wait until `check()` is truthy."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "state not reached"
        time.sleep(0.01)


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def test_files_are_laid_out_as_a_configmap_and_swapped_through_data(
    local_aws: LocalAws, service_fleet: FleetFactory, tmp_path: Path, shm_dir: Path
) -> None:
    ssm = local_aws.client("ssm")
    prefix = local_aws.prefix
    ssm.put_parameter(Name=f"{prefix}db_url", Value="postgres://one", Type="String")
    ssm.put_parameter(Name=f"{prefix}feature/x", Value="on", Type="String")
    ssm.put_parameter(Name=f"{prefix}gone", Value="soon", Type="String")
    ssm.put_parameter(Name=f"{prefix}password", Value="s3cret", Type="SecureString")
    files = tmp_path / "config"
    instance, _base = start_local_instance(
        service_fleet,
        local_aws,
        http=False,
        extra_args=["--local-files-dir", str(files), "--local-files-secure-dir", str(shm_dir)],
    )
    # Written before SERVING: the files are there as soon as the instance is ready.
    assert (files / "db_url").read_text() == "postgres://one"
    assert (files / "feature" / "x").read_text() == "on"
    assert os.readlink(files / "db_url") == "..data/db_url"
    assert os.readlink(files / "feature") == "..data/feature"
    first = os.readlink(files / "..data")
    assert first.startswith("..")
    assert (files / first).is_dir()
    assert stat.S_IMODE((files / "db_url").stat().st_mode) == 0o444
    assert not (files / "password").exists(), "a SecureString never goes to the plain directory"
    assert (shm_dir / "password").read_text() == "s3cret"
    assert stat.S_IMODE((shm_dir / "password").stat().st_mode) == 0o400
    assert stat.S_IMODE((shm_dir / os.readlink(shm_dir / "..data")).stat().st_mode) == 0o700

    push(instance, f"{prefix}db_url", 2, "postgres://two")
    wait_for(lambda: read(files / "db_url") == "postgres://two")
    second = os.readlink(files / "..data")
    assert second != first
    assert (files / first / "db_url").read_text() == "postgres://one", "the previous generation stays"
    assert (shm_dir / "password").read_text() == "s3cret", "an unchanged directory is not swapped"

    push(instance, f"{prefix}gone", 2, "", delete=True)
    wait_for(lambda: not (files / "gone").is_symlink())
    # The swap finishes by removing the generations older than the previous one.
    wait_for(lambda: not (files / first).exists())
    generations = sorted(p.name for p in files.iterdir() if p.name.startswith("..") and p.name != "..data")
    assert len(generations) == 2
    assert sorted(p.name for p in files.iterdir() if not p.name.startswith("..")) == ["db_url", "feature"]


def test_a_concurrent_reader_never_sees_a_partial_or_missing_file(
    local_aws: LocalAws, service_fleet: FleetFactory, tmp_path: Path
) -> None:
    name = f"{local_aws.prefix}big"
    size = 256 * 1024  # far more than one write(2) page: a torn read would mix two values
    local_aws.client("ssm").put_parameter(Name=name, Value="a", Type="String")
    files = tmp_path / "config"
    instance, _base = start_local_instance(
        service_fleet, local_aws, http=False, extra_args=["--local-files-dir", str(files)]
    )
    final = chr(ord("a") + 25) * size
    bad: list[str] = []
    seen: set[str] = set()
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                text = (files / "big").read_text()
            except OSError as error:
                bad.append(f"read failed: {error}")
                continue
            if text != "a" and (len(text) != size or len(set(text)) != 1):
                bad.append(f"partial or mixed file: {len(text)} bytes, {len(set(text))} distinct")
            seen.add(text[:1])
            if text == final:
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in range(2, 27):
            value = chr(ord("a") + version - 1) * size
            push(instance, name, version, value)
            wait_for(partial(lambda want: read(files / "big") == want, value))
        thread.join(60)
    finally:
        done.set()
        thread.join(10)
    assert not bad, bad[:5]
    assert (files / "big").read_text() == final
    assert len(seen) > 2, "the reader raced real swaps"


def test_a_secure_directory_not_in_memory_is_refused_unless_opted_out(
    local_aws: LocalAws, service_fleet: FleetFactory, tmp_path: Path
) -> None:
    on_disk = tmp_path / "secure"
    memory, fstype = is_memory_backed(on_disk)
    assert not memory, f"{tmp_path} is on {fstype}: this test needs a disk-backed tmp_path"
    done = subprocess.run(
        [
            *service_command(),
            "--insecure-refresh",
            "--local-files-secure-dir",
            str(on_disk),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "CONFIG_SERVICE_LOCAL_FILES_SECURE_DIR" in done.stderr
    assert "not a memory-backed one (tmpfs)" in done.stderr

    name = f"{local_aws.prefix}password"
    local_aws.client("ssm").put_parameter(Name=name, Value="s3cret", Type="SecureString")
    start_local_instance(
        service_fleet,
        local_aws,
        http=False,
        extra_args=["--local-files-secure-dir", str(on_disk), "--insecure-local-files-secure-on-disk"],
    )
    assert (on_disk / "password").read_text() == "s3cret"
    assert stat.S_IMODE((on_disk / "password").stat().st_mode) == 0o400
