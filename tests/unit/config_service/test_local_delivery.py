"""Local delivery (issue 21) without processes: name mapping, the atomic directory, the mount check, the
cache listeners, the HTTP API in-process (long poll woken by a cache swap), the hook's process lookup and
the settings rules."""

from __future__ import annotations

import asyncio
import os
import stat
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import pytest
from aiohttp.test_utils import TestClient, TestServer

from config_service.cache import ConfigCache, Entry, ValueType
from config_service.changes import ChangeFeed
from config_service.files import AtomicDir, file_path, is_memory_backed, mount_of, payloads
from config_service.http_api import HttpApi, etag_values, parse_wait
from config_service.lifecycle import Lifecycle, Phase
from config_service.metrics import Metrics
from config_service.reload_hook import find_processes, pids_from_file
from config_service.settings import Settings, SettingsError, reload_signal

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def entry(name: str, value: str, version: int = 1, kind: ValueType = ValueType.STRING) -> Entry:
    return Entry(name, value, kind, version, NOW.replace(minute=version), NOW)


@pytest.mark.parametrize(
    ("name", "prefixes", "path"),
    [
        ("/cs/acme/orders/db_url", ("/cs/acme/orders/",), "db_url"),
        ("/cs/acme/orders/db_url", ("/cs/", "/cs/acme/"), "orders/db_url"),
        ("/elsewhere/x", ("/cs/",), "elsewhere/x"),
        ("/cs/a//b", ("/cs/",), "a/b"),
        ("/cs/../etc/passwd", ("/cs/",), None),
        ("/cs/..data", ("/cs/",), None),
        ("/cs/./x", ("/cs/",), None),
        ("/cs/", ("/cs/",), "cs"),
    ],
)
def test_a_parameter_name_maps_to_a_safe_relative_path(
    name: str, prefixes: tuple[str, ...], path: str | None
) -> None:
    assert file_path(name, prefixes) == (PurePosixPath(path) if path else None)


def test_payloads_split_secrets_and_skip_names_that_collide() -> None:
    skipped: list[str] = []
    plain, secure = payloads(
        [
            entry("/p/a", "1"),
            entry("/p/a/b", "2"),  # its parent path is a file already: the shorter name wins
            entry("/p/c", "3"),
            entry("/p/s", "hush", kind=ValueType.SECURE_STRING),
            entry("/p/../x", "4"),
            Entry("/p/gone", "", ValueType.STRING, 2, NOW, NOW, deleted=True),
        ],
        ("/p/",),
        on_skip=lambda name, _why: skipped.append(name),
    )
    assert plain == {PurePosixPath("a"): b"1", PurePosixPath("c"): b"3"}
    assert secure == {PurePosixPath("s"): b"hush"}
    assert sorted(skipped) == ["/p/../x", "/p/a/b"]


def test_the_atomic_directory_flips_data_and_keeps_one_previous_generation(tmp_path: Path) -> None:
    directory = AtomicDir(tmp_path, file_mode=0o444, dir_mode=0o755)
    assert directory.write({PurePosixPath("a"): b"1", PurePosixPath("d/x"): b"x"})
    first = os.readlink(tmp_path / "..data")
    assert (tmp_path / "a").read_text() == "1"
    assert (tmp_path / "d" / "x").read_text() == "x"
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o444
    assert not directory.write({PurePosixPath("a"): b"1", PurePosixPath("d/x"): b"x"}), "nothing changed"
    assert directory.write({PurePosixPath("a"): b"2"})
    second = os.readlink(tmp_path / "..data")
    assert (tmp_path / "a").read_text() == "2"
    assert not (tmp_path / "d").is_symlink(), "a top-level name that went away loses its symlink"
    assert (tmp_path / first / "a").read_text() == "1"
    assert directory.write({PurePosixPath("a"): b"3"})
    assert not (tmp_path / first).exists()
    assert (tmp_path / second).is_dir()
    assert not (tmp_path / "..data_tmp").exists()


def test_the_mount_table_decides_what_is_memory_backed(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "overlay / overlay rw 0 0\n"
        "tmpfs /dev/shm tmpfs rw 0 0\n"
        "tmpfs /run/with\\040space tmpfs rw 0 0\n"
        f"/dev/sda1 {tmp_path}/disk ext4 rw 0 0\n"
        f"tmpfs {tmp_path}/mem tmpfs rw 0 0\n"
    )
    (tmp_path / "disk").mkdir()
    (tmp_path / "mem").mkdir()
    assert is_memory_backed(tmp_path / "mem" / "secrets" / "not-yet", mounts) == (True, "tmpfs")
    assert mount_of(tmp_path / "disk" / "x", mounts) == (f"{tmp_path}/disk", "ext4")
    assert is_memory_backed(Path("/var/lib"), mounts) == (False, "overlay")
    assert is_memory_backed(Path("/dev/shmother"), mounts) == (False, "overlay")


def test_cache_listeners_hear_applied_changes_only_and_cannot_break_a_write() -> None:
    cache = ConfigCache([entry("/p/a", "1")])
    heard: list[list[str]] = []

    def broken(_applied: object) -> None:
        raise RuntimeError("listener bug")

    cache.add_listener(broken)
    cache.add_listener(lambda applied: heard.append([e.name for e in applied]))
    assert cache.apply(entry("/p/a", "2", version=2)).outcome.value == "applied"
    cache.apply(entry("/p/a", "old", version=1))  # stale: no notification
    cache.apply_many([entry("/p/b", "1"), entry("/p/a", "2", version=2)])
    assert heard == [["/p/a"], ["/p/b"]]
    assert cache.get("/p/a") is not None


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("7", 7.0)])
def test_wait_durations(text: str, seconds: float) -> None:
    assert parse_wait(text) == seconds


def test_bad_wait_and_etag_forms() -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_wait("soon")
    assert etag_values('"3", W/"4", *') == {"3", "4", "*"}


async def parked(metrics: Metrics, count: int) -> None:
    """Wait until `count` long polls wait in the API (so the change below is what answers them)."""
    for _ in range(1000):
        if metrics.registry.get_sample_value("config_service_local_http_long_polls") == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the long poll never parked")


async def test_a_long_poll_in_process_is_woken_by_a_cache_swap_and_ended_by_stop() -> None:
    cache = ConfigCache([entry("/p/a", "1")])
    lifecycle = Lifecycle()
    await lifecycle.set(Phase.SERVING)
    metrics = Metrics(cache)
    api = HttpApi(
        cache=cache,
        feed=ChangeFeed(cache, asyncio.get_running_loop()),
        lifecycle=lifecycle,
        metrics=metrics,
        prefixes=("/p/",),
        secure_strings=False,
        default_wait_seconds=30.0,
        max_wait_seconds=300.0,
    )
    async with TestClient(TestServer(api.application())) as client:
        poll = asyncio.create_task(client.get("/v1/config/p/a?wait=60s", headers={"If-None-Match": '"1"'}))
        await parked(metrics, 1)
        cache.apply(entry("/p/a", "2", version=2))
        answer = await asyncio.wait_for(poll, 10)
        assert answer.status == 200
        assert answer.headers["ETag"] == '"2"'
        assert (await answer.json())["value"] == "2"

        # A thread-side write reaches the loop too (call_soon_threadsafe).
        poll = asyncio.create_task(client.get("/v1/config/p/a", headers={"If-None-Match": '"2"'}))
        await parked(metrics, 1)
        await asyncio.to_thread(cache.apply, entry("/p/a", "3", version=3))
        answer = await asyncio.wait_for(poll, 10)
        assert answer.headers["ETag"] == '"3"'

        poll = asyncio.create_task(client.get("/v1/config/p/a?wait=60s", headers={"If-None-Match": '"3"'}))
        await parked(metrics, 1)
        await api.stop()
        answer = await asyncio.wait_for(poll, 10)
        assert answer.status == 304, "stopping ends a parked long poll with what is current"


async def test_the_http_api_answers_503_until_serving() -> None:
    cache = ConfigCache([entry("/p/a", "1")])
    api = HttpApi(
        cache=cache,
        feed=ChangeFeed(cache, asyncio.get_running_loop()),
        lifecycle=Lifecycle(),
        metrics=Metrics(cache),
        prefixes=("/p/",),
        secure_strings=False,
        default_wait_seconds=30.0,
        max_wait_seconds=300.0,
    )
    async with TestClient(TestServer(api.application())) as client:
        assert (await client.get("/v1/config/p/a")).status == 503
        assert (await client.get("/v1/health")).status == 503


def test_processes_are_found_by_comm_or_argv0_and_pids_read_from_a_file(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, comm, argv0 in (
        (101, "orders", "/app/orders"),
        (102, "node", "/usr/bin/node"),
        (103, "sh", "/app/api"),
    ):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
        (proc / str(pid) / "cmdline").write_bytes(argv0.encode() + b"\0--flag\0")
    (proc / "self").mkdir()
    assert find_processes("orders", proc) == [101]
    assert find_processes("api", proc) == [103]
    assert find_processes("java", proc) == []
    (tmp_path / "pid").write_text("4242\n")
    assert pids_from_file(tmp_path / "pid") == [4242]
    (tmp_path / "bad").write_text("")
    with pytest.raises(ValueError, match="no pid"):
        pids_from_file(tmp_path / "bad")


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"local_http_port": 0, "local_http_host": "0.0.0.0"}, "LOCAL_HTTP_HOST"),
        ({"local_http_host": "192.168.1.10"}, "LOCAL_HTTP_HOST"),
        ({"local_http_default_wait_seconds": 400.0}, "LOCAL_HTTP_DEFAULT_WAIT_SECONDS"),
        ({"local_reload_url": "http://10.0.0.1/reload"}, "LOCAL_RELOAD_URL"),
        ({"local_reload_url": "https://127.0.0.1/reload"}, "LOCAL_RELOAD_URL"),
        ({"local_reload_signal": "SIGNOPE", "local_reload_process_name": "x"}, "LOCAL_RELOAD_SIGNAL"),
        ({"local_reload_signal": "HUP"}, "LOCAL_RELOAD_SIGNAL"),
        ({"local_reload_process_name": "x"}, "LOCAL_RELOAD_SIGNAL"),
    ],
)
def test_local_delivery_settings_refuse_what_would_leave_the_pod_or_cannot_work(
    fields: dict[str, object], key: str
) -> None:
    with pytest.raises(SettingsError, match=f"CONFIG_SERVICE_{key}"):
        Settings(insecure_refresh=True, **fields)


def test_the_secure_directory_must_be_apart_from_the_plain_one(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CONFIG_SERVICE_LOCAL_FILES_SECURE_DIR"):
        Settings(
            insecure_refresh=True,
            local_files_dir=tmp_path,
            local_files_secure_dir=tmp_path / "secure",
            insecure_local_files_secure_on_disk=True,
        )
    assert reload_signal("hup") is reload_signal("SIGHUP") is not None
    assert reload_signal("1") is not None
    settings = Settings(insecure_refresh=True, local_http_port=0, local_http_host="::1")
    assert settings.local_http_host == "::1"


async def test_a_listing_of_overlapping_prefixes_holds_each_parameter_once() -> None:
    cache = ConfigCache([entry("/p/a/x", "1"), entry("/p/b", "2"), entry("/q/c", "3")])
    lifecycle = Lifecycle()
    await lifecycle.set(Phase.SERVING)
    api = HttpApi(
        cache=cache,
        feed=ChangeFeed(cache, asyncio.get_running_loop()),
        lifecycle=lifecycle,
        metrics=Metrics(cache),
        prefixes=("/p/", "/p/a/"),
        secure_strings=False,
        default_wait_seconds=30.0,
        max_wait_seconds=300.0,
    )
    async with TestClient(TestServer(api.application())) as client:
        listing = await (await client.get("/v1/config")).json()
        assert [p["name"] for p in listing["parameters"]] == ["/p/a/x", "/p/b"]
        listing = await (await client.get("/v1/config?prefix=q/")).json()
        assert [p["name"] for p in listing["parameters"]] == ["/q/c"]


async def test_the_reload_hook_coalesces_changes_that_arrive_while_it_runs() -> None:
    from aiohttp import web

    from config_service.reload_hook import ReloadHook

    received: list[list[str]] = []
    release = asyncio.Event()

    async def reload(request: web.Request) -> web.Response:
        received.append((await request.json())["changed"])
        await release.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/reload", reload)
    cache = ConfigCache()
    metrics = Metrics(cache)
    async with TestServer(app) as server:
        hook = ReloadHook(metrics=metrics, url=str(server.make_url("/reload")), timeout_seconds=30)
        hook.notify(("/p/a",))
        for _ in range(1000):  # the first POST is in the app's hands
            if received:
                break
            await asyncio.sleep(0.01)
        hook.notify(("/p/b",))  # returns at once although the hook is busy
        hook.notify(("/p/c", "/p/b"))
        release.set()
        await hook.idle()
        await hook.close()
    assert received == [["/p/a"], ["/p/b", "/p/c"]]
    ok = metrics.registry.get_sample_value(
        "config_service_reload_hooks_total", {"kind": "http", "result": "ok"}
    )
    assert ok == 2
