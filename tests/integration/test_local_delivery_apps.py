"""Two apps with no Python in them follow a pushed change (issue 21): a Go app through the HTTP long poll,
a Node app watching the files. Both run against a real config-service process; the change arrives as the
operator sends it, a Refresh call; each app must print the new value, in the same process (no restart), and
the value must have been pushed, not found by a poll:

- the Go app's long poll waits 600 s, longer than this test waits for its line (120 s at most), so it
  cannot have timed out and asked again; and the service counts exactly one parked long poll answered by
  a change (`config_service_local_delivery_seconds_count{path="long_poll"}`: a timed-out poll is not
  counted), the Go app's, the only long poll there is;
- the Node app never polls: it reads the file at start and on an inotify event in the directory only, and
  the service counts the files swap that raised it (`config_service_local_file_swaps_total`).

How fast is the bench's to measure (bench/local_delivery.py, from the Refresh and from PutParameter); as
everywhere in this suite no test asserts a timing."""

from __future__ import annotations

import re
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

LONG_POLL = "600s"
WAIT_SECONDS = 120.0  # below the long poll's 600 s: a line within it came on the parked poll


def sample(scrape: str, name: str, labels: str) -> float:
    """One Prometheus sample of a scrape (`labels` as written, e.g. `path="long_poll"`); 0 when absent."""
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", scrape, re.M)
    return float(match.group(1)) if match else 0.0


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
        env={"CONFIG_HTTP": base, "CONFIG_NAME": name, "CONFIG_WAIT": LONG_POLL},
        log_path=tmp_path / "go-app.log",
    )
    node_app = AppProcess(
        node_filewatch_command(),
        env={"CONFIG_DIR": str(files), "CONFIG_FILE": "acme/orders/db_url"},
        log_path=tmp_path / "node-app.log",
    )
    delivered = ("config_service_local_delivery_seconds_count", 'path="long_poll"')
    swaps = ("config_service_local_file_swaps_total", 'directory="plain",result="ok"')
    try:
        go_app.wait_line(lambda line: line.endswith("version=1 value=postgres://one"))
        node_app.wait_line(lambda line: line == "config file=acme/orders/db_url value=postgres://one")
        # The Go app is parked in its long poll once the service counts one waiting request.
        deadline = time.monotonic() + 30
        while "config_service_local_http_long_polls 1.0" not in instance.metrics_text():
            assert time.monotonic() < deadline, "the Go app never parked a long poll"
            time.sleep(0.02)
        before = instance.metrics_text()
        assert sample(before, *delivered) == 0, "no long poll was answered by a change yet"

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
        go_app.wait_line(
            lambda line: line.endswith("version=2 value=postgres://two"), after=pushed, timeout=WAIT_SECONDS
        )
        node_app.wait_line(
            lambda line: line == "config file=acme/orders/db_url value=postgres://two",
            after=pushed,
            timeout=WAIT_SECONDS,
        )
        # The Go app's parked long poll, and no other, was answered by the change (counted before the
        # answer is written, so before the app printed it).
        assert sample(instance.metrics_text(), *delivered) == 1
        # The Node app read the new value on the inotify event of the one swap the push made (the swap is
        # counted once its thread returns, after the rename the app reacted to).
        deadline = time.monotonic() + WAIT_SECONDS
        while sample(instance.metrics_text(), *swaps) < sample(before, *swaps) + 1:
            assert time.monotonic() < deadline, "the service never counted the files swap"
            time.sleep(0.02)
        assert sample(instance.metrics_text(), *swaps) == sample(before, *swaps) + 1
        # Seen by the processes that printed the first value, still running: no restart.
        assert go_app.running
        assert node_app.running
    finally:
        go_app.close()
        node_app.close()
