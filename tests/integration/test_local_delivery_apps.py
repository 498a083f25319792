"""Two apps with no Python in them follow a pushed change (issue 21): a Go app through the HTTP long poll,
a Node app watching the files. Both run against a real config-service process; the change arrives as the
operator sends it, a Refresh call; each app must print the new value, pushed (not found by a poll).

The latency itself is the bench's to measure (bench/local_delivery.py, docs/benchmarks.md: p99 well under a
second on this machine); as everywhere in this suite no test asserts a timing the busy machine could miss.
The bound below only tells a push from a timeout: the Go app's long poll waits 60 s, the Node app never
polls, so an answer within 10 s was pushed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from configrefresh.v1 import refresh_service_pb2 as pb
from devstack.aws.local_aws import LocalAws
from devstack.fixtures.services import FleetFactory
from devstack.services.local_apps import (
    AppProcess,
    go_longpoll_binary,
    node_filewatch_command,
    start_local_instance,
)


def test_a_go_app_and_a_node_app_see_a_pushed_change(
    local_aws: LocalAws, service_fleet: FleetFactory, tmp_path: Path
) -> None:
    name = f"{local_aws.prefix}acme/orders/db_url"
    local_aws.client("ssm").put_parameter(Name=name, Value="postgres://one", Type="String")
    files = tmp_path / "config"
    instance, base = start_local_instance(
        service_fleet, local_aws, extra_args=["--local-files-dir", str(files)]
    )
    go_app = AppProcess(
        [str(go_longpoll_binary())],
        env={"CONFIG_HTTP": base, "CONFIG_NAME": name, "CONFIG_WAIT": "60s"},
        log_path=tmp_path / "go-app.log",
    )
    node_app = AppProcess(
        node_filewatch_command(),
        env={"CONFIG_DIR": str(files), "CONFIG_FILE": "acme/orders/db_url"},
        log_path=tmp_path / "node-app.log",
    )
    try:
        go_app.wait_line(lambda line: line.endswith("version=1 value=postgres://one"))
        node_app.wait_line(lambda line: line == "config file=acme/orders/db_url value=postgres://one")
        # The Go app is parked in its long poll once the service counts one waiting request.
        deadline = time.monotonic() + 30
        while "config_service_local_http_long_polls 1.0" not in instance.metrics_text():
            assert time.monotonic() < deadline, "the Go app never parked a long poll"
            time.sleep(0.02)

        change = pb.RefreshRequest(
            refresh_id="it",
            parameter_name=name,
            version=2,
            operation=pb.OPERATION_UPSERT,
            payload_mode=pb.PAYLOAD_MODE_VALUE,
            value="postgres://two",
        )
        change.last_modified.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
        pushed = time.monotonic()
        assert instance.refresh(change).result == pb.REFRESH_RESULT_APPLIED
        go_seen, _ = go_app.wait_line(
            lambda line: line.endswith("version=2 value=postgres://two"), after=pushed
        )
        node_seen, _ = node_app.wait_line(
            lambda line: line == "config file=acme/orders/db_url value=postgres://two", after=pushed
        )
        print(f"Refresh → Go app {go_seen - pushed:.3f} s, → Node app {node_seen - pushed:.3f} s")
        assert go_seen - pushed < 10, f"Go app saw the change after {go_seen - pushed:.3f} s: not pushed"
        assert node_seen - pushed < 10, (
            f"Node app saw the change after {node_seen - pushed:.3f} s: not pushed"
        )
    finally:
        go_app.close()
        node_app.close()
