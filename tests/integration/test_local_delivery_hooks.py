"""The reload hook of a real config-service process (issue 21): an HTTP POST to the app and a signal by
pid file after a change is applied; a failing hook is counted and never holds up the change."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from configrefresh.v1 import refresh_service_pb2 as pb
from devstack.aws.local_aws import LocalAws
from devstack.controlplane.procs import free_ports
from devstack.fixtures.services import FleetFactory
from devstack.services.fleet import Instance
from devstack.services.local_apps import AppProcess, http_get, start_local_instance


class Posts:
    """What the fake app received: POST bodies, with a condition to wait on."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, list[str]]] = []
        self.changed = threading.Condition()

    def wait(self, count: int, timeout: float = 30.0) -> list[dict[str, list[str]]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.bodies) >= count, timeout), self.bodies
            return list(self.bodies)


@pytest.fixture
def app_server() -> Iterator[tuple[str, Posts]]:
    """A tiny app on 127.0.0.1 with a reload endpoint that records what it is sent."""
    posts = Posts()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with posts.changed:
                posts.bodies.append(json.loads(body))
                posts.changed.notify_all()
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/-/reload", posts
    finally:
        server.shutdown()
        server.server_close()


def push(instance: Instance, name: str, version: int, value: str) -> None:
    change = pb.RefreshRequest(
        refresh_id="it",
        parameter_name=name,
        version=version,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE,
        value=value,
    )
    change.last_modified.FromDatetime(datetime.now(UTC) + timedelta(minutes=version))
    assert instance.refresh(change).result == pb.REFRESH_RESULT_APPLIED


def metric(instance: Instance, line_start: str) -> float:
    for line in instance.metrics_text().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_app_gets_a_post_after_the_files_are_swapped(
    local_aws: LocalAws, service_fleet: FleetFactory, tmp_path: Path, app_server: tuple[str, Posts]
) -> None:
    url, posts = app_server
    name = f"{local_aws.prefix}acme/limit"
    local_aws.client("ssm").put_parameter(Name=name, Value="10", Type="String")
    files = tmp_path / "config"
    instance, _base = start_local_instance(
        service_fleet,
        local_aws,
        http=False,
        extra_args=["--local-files-dir", str(files), "--local-reload-url", url],
    )
    push(instance, name, 2, "20")
    (body,) = posts.wait(1)
    assert body == {"changed": [name]}
    assert (files / "acme" / "limit").read_text() == "20", "the hook runs once the files hold the change"
    deadline = time.monotonic() + 30
    while metric(instance, 'config_service_reload_hooks_total{kind="http",result="ok"}') < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_failing_hook_is_counted_and_the_change_still_applies(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    name = f"{local_aws.prefix}acme/limit"
    local_aws.client("ssm").put_parameter(Name=name, Value="10", Type="String")
    (closed,) = free_ports(1)  # nothing listens there
    instance, base = start_local_instance(
        service_fleet,
        local_aws,
        extra_args=["--local-reload-url", f"http://127.0.0.1:{closed}/reload"],
    )
    push(instance, name, 2, "20")
    deadline = time.monotonic() + 30
    while metric(instance, 'config_service_reload_hooks_total{kind="http",result="error"}') < 1:
        assert time.monotonic() < deadline, "the failed hook was not counted"
        time.sleep(0.02)
    status, headers, _body = http_get(f"{base}/v1/config{name}")
    assert (status, headers["ETag"]) == (200, '"2"')
    push(instance, name, 3, "30")  # the next change goes through too
    assert instance.get_config(name).value == "30"


def test_a_signal_goes_to_the_process_in_the_pid_file(
    local_aws: LocalAws, service_fleet: FleetFactory, tmp_path: Path
) -> None:
    name = f"{local_aws.prefix}acme/limit"
    local_aws.client("ssm").put_parameter(Name=name, Value="10", Type="String")
    app = AppProcess(
        [
            sys.executable,
            "-c",
            "import signal, time\n"
            "signal.signal(signal.SIGHUP, lambda *_: print('reloaded', flush=True))\n"
            "print('ready', flush=True)\n"
            "while True: time.sleep(1)\n",
        ],
        env={},
        log_path=tmp_path / "app.log",
    )
    try:
        app.wait_line(lambda line: line == "ready")
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(f"{app.pid}\n")
        instance, _base = start_local_instance(
            service_fleet,
            local_aws,
            http=False,
            extra_args=["--local-reload-signal", "SIGHUP", "--local-reload-pid-file", str(pid_file)],
        )
        pushed = time.monotonic()
        push(instance, name, 2, "20")
        app.wait_line(lambda line: line == "reloaded", after=pushed)
    finally:
        app.close()
