"""The local HTTP API of a real config-service process (issue 21): ETag, long poll, 304, listing, 404,
SecureStrings withheld by default, and a non-loopback bind refused at start."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from configrefresh.v1 import refresh_service_pb2 as pb
from devstack.aws.local_aws import LocalAws
from devstack.fixtures.services import FleetFactory
from devstack.services.fleet import Instance
from devstack.services.local_apps import http_get, start_local_instance


def push(instance: Instance, name: str, version: int, value: str, **fields: Any) -> None:
    """A VALUE-mode Refresh, as the operator sends it; asserts it was applied."""
    change = pb.RefreshRequest(
        refresh_id="it",
        parameter_name=name,
        version=version,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE,
        value=value,
        **fields,
    )
    change.last_modified.FromDatetime(datetime.now(UTC) + timedelta(minutes=version))
    assert instance.refresh(change).result == pb.REFRESH_RESULT_APPLIED


def wait_long_polls(instance: Instance, count: int, timeout: float = 30.0) -> None:
    """Wait until `count` long polls are parked in the service (its gauge says so)."""
    deadline = time.monotonic() + timeout
    line = f"config_service_local_http_long_polls {float(count)}"
    while line not in instance.metrics_text():
        assert time.monotonic() < deadline, f"never saw {line!r}"
        time.sleep(0.02)


def test_one_parameter_has_its_version_as_etag_and_unknown_is_404(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    name = f"{local_aws.prefix}acme/orders/db_url"
    local_aws.client("ssm").put_parameter(Name=name, Value="postgres://one", Type="String")
    _instance, base = start_local_instance(service_fleet, local_aws)

    status, headers, body = http_get(f"{base}/v1/config{name}")
    assert status == 200
    assert headers["ETag"] == '"1"'
    answer = json.loads(body)
    assert (answer["name"], answer["value"], answer["version"], answer["type"]) == (
        name,
        "postgres://one",
        1,
        "String",
    )
    encoded = name.lstrip("/").replace("/", "%2F")
    assert http_get(f"{base}/v1/config/{encoded}")[0] == 200
    status, _headers, body = http_get(f"{base}/v1/config{local_aws.prefix}acme/nothing")
    assert status == 404
    assert json.loads(body)["error"] == "not found"
    assert http_get(f"{base}/v1/health")[0] == 200
    # A conditional GET without a wait is answered at once.
    assert http_get(f"{base}/v1/config{name}?wait=0s", headers={"If-None-Match": '"1"'})[0] == 304
    assert http_get(f"{base}/v1/config{name}?wait=soon")[0] == 400


def test_the_long_poll_answers_as_soon_as_a_newer_version_is_applied(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    name = f"{local_aws.prefix}acme/orders/limit"
    local_aws.client("ssm").put_parameter(Name=name, Value="10", Type="String")
    instance, base = start_local_instance(service_fleet, local_aws)
    answers: list[tuple[int, dict[str, str], bytes, float]] = []

    def poll(headers: dict[str, str], query: str) -> None:
        status, got, body = http_get(f"{base}/v1/config{name}{query}", headers=headers)
        answers.append((status, got, body, time.monotonic()))

    pollers = [
        threading.Thread(target=poll, args=({"If-None-Match": '"1"'}, "?wait=120s")),
        threading.Thread(target=poll, args=({}, "?wait=120s")),  # baseline: what is current on arrival
        threading.Thread(target=poll, args=({"If-None-Match": 'W/"1"'}, "")),  # the default wait
    ]
    for poller in pollers:
        poller.start()
    wait_long_polls(instance, 3)
    pushed = time.monotonic()
    push(instance, name, 2, "20")
    for poller in pollers:
        poller.join(60)
    assert len(answers) == 3
    for status, headers, body, arrived in answers:
        assert status == 200
        assert headers["ETag"] == '"2"'
        assert json.loads(body)["value"] == "20"
        assert arrived - pushed < 10, "answered by the change, not by the 120 s timeout"


def test_a_long_poll_with_if_none_match_answers_304_on_timeout(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    name = f"{local_aws.prefix}acme/orders/quiet"
    local_aws.client("ssm").put_parameter(Name=name, Value="same", Type="String")
    _instance, base = start_local_instance(service_fleet, local_aws)
    started = time.monotonic()
    status, headers, body = http_get(f"{base}/v1/config{name}?wait=1s", headers={"If-None-Match": '"1"'})
    assert (status, headers["ETag"], body) == (304, '"1"', b"")
    assert time.monotonic() - started >= 1.0
    # Without If-None-Match the timeout answers the current value.
    status, _headers, body = http_get(f"{base}/v1/config{name}?wait=500ms")
    assert (status, json.loads(body)["value"]) == (200, "same")
    # A caller holding an older version is answered at once.
    status, headers, _body = http_get(f"{base}/v1/config{name}?wait=60s", headers={"If-None-Match": '"0"'})
    assert (status, headers["ETag"]) == (200, '"1"')


def test_the_prefix_listing_withholds_securestrings_and_follows_changes(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    ssm = local_aws.client("ssm")
    prefix = f"{local_aws.prefix}acme/"
    ssm.put_parameter(Name=f"{prefix}orders/a", Value="1", Type="String")
    ssm.put_parameter(Name=f"{prefix}orders/b", Value="x,y", Type="StringList")
    ssm.put_parameter(Name=f"{prefix}orders/password", Value="s3cret", Type="SecureString")
    ssm.put_parameter(Name=f"{local_aws.prefix}other/c", Value="elsewhere", Type="String")
    instance, base = start_local_instance(service_fleet, local_aws)

    status, headers, body = http_get(f"{base}/v1/config?prefix={prefix}orders/")
    assert status == 200
    listing = json.loads(body)
    assert [(p["name"], p["value"]) for p in listing["parameters"]] == [
        (f"{prefix}orders/a", "1"),
        (f"{prefix}orders/b", "x,y"),
    ]
    assert listing["withheld"] == [f"{prefix}orders/password"]
    assert b"s3cret" not in body
    status, _h, body = http_get(f"{base}/v1/config{prefix}orders/password")
    assert status == 403
    assert b"s3cret" not in body
    everything = json.loads(http_get(f"{base}/v1/config")[2])
    assert f"{local_aws.prefix}other/c" in [p["name"] for p in everything["parameters"]]

    tag = headers["ETag"]
    assert (
        http_get(f"{base}/v1/config?prefix={prefix}orders/&wait=0s", headers={"If-None-Match": tag})[0] == 304
    )
    answers: list[tuple[int, dict[str, str], bytes]] = []
    poller = threading.Thread(
        target=lambda: answers.append(
            http_get(f"{base}/v1/config?prefix={prefix}orders/&wait=120s", headers={"If-None-Match": tag})
        )
    )
    poller.start()
    wait_long_polls(instance, 1)
    push(instance, f"{prefix}orders/a", 2, "2")
    poller.join(60)
    status, headers, body = answers[0]
    assert status == 200
    assert headers["ETag"] != tag
    assert json.loads(body)["parameters"][0]["value"] == "2"


def test_securestrings_are_served_with_the_explicit_flag(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    name = f"{local_aws.prefix}acme/orders/password"
    local_aws.client("ssm").put_parameter(Name=name, Value="s3cret", Type="SecureString")
    _instance, base = start_local_instance(
        service_fleet, local_aws, extra_args=["--local-http-secure-strings"]
    )
    status, _headers, body = http_get(f"{base}/v1/config{name}")
    assert (status, json.loads(body)["value"], json.loads(body)["type"]) == (200, "s3cret", "SecureString")


def test_a_non_loopback_bind_address_is_refused_at_start() -> None:
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "config_service",
                "--insecure-refresh",
                "--local-http-port",
                "0",
                "--local-http-host",
                host,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "CONFIG_SERVICE_LOCAL_HTTP_HOST" in done.stderr
        assert "not a loopback address" in done.stderr
