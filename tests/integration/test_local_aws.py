"""The local AWS stack behaves like AWS on the path a change travels (moto server, a separate process).

Parameter Store write -> "Parameter Store Change" event -> EventBridge rule (name prefix) -> SQS, with a
DLQ by redrive policy; Cloud Map with custom health; and the endpoint's request counting and fault
injection that benchmarks and reliability tests rely on. "Never arrives" is proven by ordering, not by
sleeping: a later write that does match arrives, and a further long poll after it stays empty.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.aws.local_aws import LocalAws, LocalAwsError

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/config-service/"
AWS_ENVELOPE_KEYS = [
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
]


def receive(stack: LocalAws, queue_url: str, *, wait: int = 5, visibility: int | None = None) -> list[Any]:
    kwargs: dict[str, Any] = {"QueueUrl": queue_url, "WaitTimeSeconds": wait, "MaxNumberOfMessages": 10}
    if visibility is not None:
        kwargs["VisibilityTimeout"] = visibility
    messages: list[Any] = stack.client("sqs").receive_message(**kwargs).get("Messages", [])
    return messages


def drain_events(stack: LocalAws, *, until_name: str, wait: int = 5) -> list[dict[str, Any]]:
    """Events received (and deleted) up to and including the first one for `until_name`."""
    sqs = stack.client("sqs")
    events: list[dict[str, Any]] = []
    for _ in range(10):
        messages = receive(stack, stack.queue_url, wait=wait)
        for message in messages:
            sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
            events.append(json.loads(message["Body"]))
        if any(e["detail"]["name"] == until_name for e in events):
            return events
        if not messages:
            break
    raise AssertionError(f"no event for {until_name} arrived; got {events}")


def assert_aws_envelope(
    event: dict[str, Any], stack: LocalAws, *, name: str, type_: str, operation: str
) -> None:
    assert list(event) == AWS_ENVELOPE_KEYS
    assert event["version"] == "0"
    assert str(uuid.UUID(event["id"])) == event["id"]
    assert event["detail-type"] == "Parameter Store Change"
    assert event["source"] == "aws.ssm"
    assert event["account"] == stack.account_id
    assert event["region"] == stack.region
    sent = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - sent).total_seconds()) < 120
    assert event["resources"] == [f"arn:aws:ssm:{stack.region}:{stack.account_id}:parameter{name}"]
    assert event["detail"] == {"name": name, "type": type_, "operation": operation}


# ----- Parameter Store -> EventBridge -> SQS -------------------------------------------------------------


def test_server_is_a_separate_process_on_loopback(local_aws: LocalAws) -> None:
    assert local_aws.endpoint_url.startswith("http://127.0.0.1:")
    assert local_aws.health()["pid"] not in (None, os.getpid())


def test_write_under_prefix_arrives_and_write_outside_never_does(local_aws: LocalAws) -> None:
    ssm = local_aws.client("ssm")
    outside, inside = "/other-service/acme/db_url", f"{PREFIX}acme/orders/db_url"

    ssm.put_parameter(Name=outside, Value="postgres://outside", Type="String")
    ssm.put_parameter(Name=inside, Value="postgres://inside", Type="String")

    events = drain_events(local_aws, until_name=inside)
    assert [e["detail"]["name"] for e in events] == [inside]
    assert_aws_envelope(events[0], local_aws, name=inside, type_="String", operation="Create")
    # The outside write happened first; delivery is synchronous in the write, so had it matched it would
    # be on the queue before the inside one. One more long poll proves nothing else is there.
    assert local_aws.receive_events(wait_seconds=3) == []


def test_overwrite_is_an_update_event(local_aws: LocalAws) -> None:
    ssm = local_aws.client("ssm")
    name = f"{PREFIX}acme/feature_flags"
    ssm.put_parameter(Name=name, Value="a,b", Type="StringList")
    drain_events(local_aws, until_name=name)

    ssm.put_parameter(Name=name, Value="a,b,c", Overwrite=True)

    events = drain_events(local_aws, until_name=name)
    assert_aws_envelope(events[-1], local_aws, name=name, type_="StringList", operation="Update")


def test_secure_string_event_carries_no_value(local_aws: LocalAws) -> None:
    name = f"{PREFIX}acme/api_key"
    local_aws.client("ssm").put_parameter(Name=name, Value="s3cr3t-value", Type="SecureString")

    message = receive(local_aws, local_aws.queue_url)[0]

    assert "s3cr3t-value" not in message["Body"]
    assert_aws_envelope(
        json.loads(message["Body"]), local_aws, name=name, type_="SecureString", operation="Create"
    )


def test_delete_parameter_emits_delete_with_the_deleted_type(local_aws: LocalAws) -> None:
    ssm = local_aws.client("ssm")
    name = f"{PREFIX}acme/api_key"
    ssm.put_parameter(Name=name, Value="v1", Type="SecureString")
    drain_events(local_aws, until_name=name)

    ssm.delete_parameter(Name=name)

    events = drain_events(local_aws, until_name=name)
    assert_aws_envelope(events[-1], local_aws, name=name, type_="SecureString", operation="Delete")


def test_delete_parameters_emits_one_event_per_deleted_name(local_aws: LocalAws) -> None:
    ssm = local_aws.client("ssm")
    names = [f"{PREFIX}acme/a", f"{PREFIX}acme/b"]
    for name in names:
        ssm.put_parameter(Name=name, Value="v", Type="String")
    drain_events(local_aws, until_name=names[-1])

    result = ssm.delete_parameters(Names=[*names, f"{PREFIX}acme/missing"])
    control = f"{PREFIX}zz-control"
    ssm.put_parameter(Name=control, Value="v", Type="String")

    assert result["InvalidParameters"] == [f"{PREFIX}acme/missing"]
    events = drain_events(local_aws, until_name=control)
    deletes = [e for e in events if e["detail"]["operation"] == "Delete"]
    assert sorted(e["detail"]["name"] for e in deletes) == names
    assert len({e["id"] for e in deletes}) == 2
    for event in deletes:
        assert_aws_envelope(
            event, local_aws, name=event["detail"]["name"], type_="String", operation="Delete"
        )


def test_label_parameter_version_emits_an_event(local_aws: LocalAws) -> None:
    ssm = local_aws.client("ssm")
    name = f"{PREFIX}acme/orders/timeout"
    ssm.put_parameter(Name=name, Value="5", Type="String")
    ssm.put_parameter(Name=name, Value="6", Type="String", Overwrite=True)
    drain_events(local_aws, until_name=name)

    ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["stable"])

    events = drain_events(local_aws, until_name=name)
    assert_aws_envelope(events[-1], local_aws, name=name, type_="String", operation="LabelParameterVersion")


def test_a_disabled_rule_delivers_nothing(local_aws: LocalAws) -> None:
    ssm, events = local_aws.client("ssm"), local_aws.client("events")
    events.disable_rule(Name=local_aws.rule_name)
    ssm.put_parameter(Name=f"{PREFIX}acme/while_disabled", Value="v", Type="String")
    events.enable_rule(Name=local_aws.rule_name)
    control = f"{PREFIX}acme/after_enable"
    ssm.put_parameter(Name=control, Value="v", Type="String")

    assert [e["detail"]["name"] for e in drain_events(local_aws, until_name=control)] == [control]


def test_reset_can_move_the_prefix(local_aws: LocalAws) -> None:
    local_aws.reset(prefix="/billing/")
    ssm = local_aws.client("ssm")
    ssm.put_parameter(Name=f"{PREFIX}acme/x", Value="v", Type="String")
    ssm.put_parameter(Name="/billing/acme/x", Value="v", Type="String")

    assert [e["detail"]["name"] for e in drain_events(local_aws, until_name="/billing/acme/x")] == [
        "/billing/acme/x"
    ]


def test_reset_wipes_parameters_and_messages(local_aws: LocalAws) -> None:
    ssm = local_aws.client("ssm")
    ssm.put_parameter(Name=f"{PREFIX}acme/x", Value="v", Type="String")

    local_aws.reset()

    with pytest.raises(ClientError) as info:
        ssm.get_parameter(Name=f"{PREFIX}acme/x")
    assert info.value.response["Error"]["Code"] == "ParameterNotFound"
    assert receive(local_aws, local_aws.queue_url, wait=1) == []


# ----- redrive to the DLQ --------------------------------------------------------------------------------


def test_message_received_max_receive_count_times_lands_in_the_dlq(local_aws: LocalAws) -> None:
    name = f"{PREFIX}acme/poison"
    local_aws.client("ssm").put_parameter(Name=name, Value="v", Type="String")

    for attempt in range(local_aws.max_receive_count):
        messages = receive(local_aws, local_aws.queue_url, visibility=0)
        assert len(messages) == 1, f"receive {attempt + 1} got {messages}"
    # moto moves the message on the receive after the count is reached (lazily); AWS does it then too,
    # from the consumer's point of view: the message is no longer delivered from the source queue.
    assert receive(local_aws, local_aws.queue_url, wait=1, visibility=0) == []

    dead = receive(local_aws, local_aws.dlq_url)
    assert len(dead) == 1
    assert json.loads(dead[0]["Body"])["detail"]["name"] == name


def test_queue_is_provisioned_with_redrive_visibility_and_policy(local_aws: LocalAws) -> None:
    attributes = local_aws.client("sqs").get_queue_attributes(
        QueueUrl=local_aws.queue_url, AttributeNames=["All"]
    )["Attributes"]

    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": local_aws.dlq_arn,
        "maxReceiveCount": local_aws.max_receive_count,
    }
    assert attributes["VisibilityTimeout"] == str(local_aws.visibility_timeout)
    statement = json.loads(attributes["Policy"])["Statement"][0]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": local_aws.rule_arn}}


def test_rule_pattern_and_target(local_aws: LocalAws) -> None:
    events = local_aws.client("events")
    rule = events.describe_rule(Name=local_aws.rule_name)
    targets = events.list_targets_by_rule(Rule=local_aws.rule_name)["Targets"]

    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.ssm"],
        "detail-type": ["Parameter Store Change"],
        "detail": {"name": [{"prefix": PREFIX}]},
    }
    assert [t["Arn"] for t in targets] == [local_aws.queue_arn]


# ----- Cloud Map -----------------------------------------------------------------------------------------


def discover(stack: LocalAws, **kwargs: Any) -> dict[str, dict[str, Any]]:
    response = stack.client("servicediscovery").discover_instances(
        NamespaceName=stack.namespace_name, ServiceName=stack.service_name, **kwargs
    )
    return {i["InstanceId"]: i for i in response["Instances"]}


def test_cloud_map_health_and_query_parameters(local_aws: LocalAws) -> None:
    local_aws.register_instance("orders-0", "127.0.0.10", 7001, attributes={"tenant": "acme"})
    local_aws.register_instance("orders-1", "127.0.0.11", 7001, attributes={"tenant": "acme"})
    local_aws.register_instance("billing-0", "127.0.0.12", 7001, attributes={"tenant": "globex"})

    local_aws.set_health("orders-1", healthy=False)

    healthy = discover(local_aws, HealthStatus="HEALTHY")
    assert set(healthy) == {"orders-0", "billing-0"}
    assert healthy["orders-0"]["Attributes"] == {
        "AWS_INSTANCE_IPV4": "127.0.0.10",
        "AWS_INSTANCE_PORT": "7001",
        "tenant": "acme",
    }
    assert set(discover(local_aws, HealthStatus="HEALTHY", QueryParameters={"tenant": "acme"})) == {
        "orders-0"
    }
    assert set(discover(local_aws, HealthStatus="ALL", QueryParameters={"tenant": "acme"})) == {
        "orders-0",
        "orders-1",
    }

    local_aws.set_health("orders-1", healthy=True)
    local_aws.deregister_instance("orders-0")
    assert set(discover(local_aws, HealthStatus="HEALTHY", QueryParameters={"tenant": "acme"})) == {
        "orders-1"
    }


def test_cloud_map_reregistration_updates_and_initial_health_is_honoured(local_aws: LocalAws) -> None:
    local_aws.register_instance("orders-0", "127.0.0.10", 7001, attributes={"tenant": "acme"}, healthy=False)
    assert discover(local_aws, HealthStatus="HEALTHY") == {}

    local_aws.register_instance("orders-0", "127.0.0.20", 7002, attributes={"tenant": "acme"})

    instances = discover(local_aws, HealthStatus="ALL")
    assert list(instances) == ["orders-0"]
    assert instances["orders-0"]["HealthStatus"] == "HEALTHY"
    assert instances["orders-0"]["Attributes"]["AWS_INSTANCE_IPV4"] == "127.0.0.20"


def test_discover_instances_returns_100_unless_max_results_says_more(local_aws: LocalAws) -> None:
    cloudmap = local_aws.client("servicediscovery")
    for i in range(105):
        cloudmap.register_instance(
            ServiceId=local_aws.service_id, InstanceId=f"i-{i}", Attributes={"AWS_INSTANCE_IPV4": "127.0.0.1"}
        )

    assert len(discover(local_aws)) == 100
    assert len(discover(local_aws, MaxResults=1000)) == 105


# ----- counting and fault injection ----------------------------------------------------------------------


def test_calls_are_counted_per_action_and_the_emitter_is_not(local_aws: LocalAws) -> None:
    ssm = local_aws.client("ssm")
    name = f"{PREFIX}acme/x"

    ssm.put_parameter(Name=name, Value="v", Type="String")
    ssm.get_parameter(Name=name)
    ssm.get_parameter(Name=name)
    receive(local_aws, local_aws.queue_url)

    assert local_aws.call_counts() == {
        "ssm:PutParameter": 1,
        "ssm:GetParameter": 2,
        "sqs:ReceiveMessage": 1,
    }
    local_aws.reset_call_counts()
    assert local_aws.call_counts() == {}


def test_injected_throttling_is_a_real_throttling_error_for_the_next_n_calls(local_aws: LocalAws) -> None:
    name = f"{PREFIX}acme/x"
    local_aws.client("ssm").put_parameter(Name=name, Value="v", Type="String")
    no_retry = boto3.client(
        "ssm",
        endpoint_url=local_aws.endpoint_url,
        region_name=local_aws.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    local_aws.reset_call_counts()

    local_aws.inject_fault("ssm:GetParameter", "ThrottlingException", count=2)

    for _ in range(2):
        with pytest.raises(ClientError) as info:
            no_retry.get_parameter(Name=name)
        assert info.value.response["Error"]["Code"] == "ThrottlingException"
        assert info.value.response["Error"]["Message"] == "Rate exceeded"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert no_retry.get_parameter(Name=name)["Parameter"]["Value"] == "v"
    assert local_aws.call_counts() == {"ssm:GetParameter": 3}
    assert local_aws.pending_faults() == []


def test_standard_retries_ride_out_a_short_fault(local_aws: LocalAws) -> None:
    name = f"{PREFIX}acme/x"
    ssm = local_aws.client("ssm")
    ssm.put_parameter(Name=name, Value="v", Type="String")
    local_aws.reset_call_counts()

    local_aws.inject_fault("ssm:GetParameter", "InternalServerError", count=2)

    assert ssm.get_parameter(Name=name)["Parameter"]["Value"] == "v"
    assert local_aws.call_counts() == {"ssm:GetParameter": 3}


def test_faults_are_per_action_and_cleared_by_reset(local_aws: LocalAws) -> None:
    local_aws.inject_fault("ssm:PutParameter", "ThrottlingException", count=5)
    local_aws.inject_fault("sqs:ReceiveMessage", "ServiceUnavailable", count=1)

    assert {f["action"] for f in local_aws.pending_faults()} == {"ssm:PutParameter", "sqs:ReceiveMessage"}
    local_aws.reset()
    assert local_aws.pending_faults() == []
    local_aws.client("ssm").put_parameter(Name=f"{PREFIX}acme/x", Value="v", Type="String")


def test_a_bad_fault_request_is_refused(local_aws: LocalAws) -> None:
    with pytest.raises(LocalAwsError, match="400"):
        local_aws.inject_fault("GetParameter", count=1)


# ----- the command --------------------------------------------------------------------------------------


def run_command(*args: str, state_file: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCAL_AWS_STATE_FILE": str(state_file)}
    return subprocess.run(
        [str(REPO / "hack" / "local-aws"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_local_aws_command_up_env_down(tmp_path: Path) -> None:
    state_file = tmp_path / "local-aws.json"
    up = run_command("up", "--prefix", "/demo/", state_file=state_file)
    try:
        assert up.returncode == 0, up.stderr
        env = run_command("env", state_file=state_file)
        assert env.returncode == 0, env.stderr
        exported = dict(
            line.removeprefix("export ").split("=", 1)
            for line in env.stdout.splitlines()
            if line.startswith("export ")
        )
        for key in (
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "CONFIG_REFRESH_QUEUE_URL",
            "CONFIG_REFRESH_DLQ_URL",
            "CONFIG_REFRESH_CLOUDMAP_NAMESPACE",
            "CONFIG_REFRESH_CLOUDMAP_NAMESPACE_ID",
            "CONFIG_REFRESH_CLOUDMAP_SERVICE",
            "CONFIG_REFRESH_CLOUDMAP_SERVICE_ID",
        ):
            assert exported.get(key), f"{key} missing from:\n{env.stdout}"

        # The exports are enough for a plain SDK client: a write under the prefix reaches the queue.
        state = json.loads(state_file.read_text())
        stack = LocalAws.from_description(state)
        assert exported["AWS_ENDPOINT_URL"] == stack.endpoint_url
        assert exported["CONFIG_REFRESH_QUEUE_URL"] == stack.queue_url
        stack.client("ssm").put_parameter(Name="/demo/x", Value="v", Type="String")
        messages = receive(stack, exported["CONFIG_REFRESH_QUEUE_URL"])
        assert json.loads(messages[0]["Body"])["detail"]["name"] == "/demo/x"

        again = run_command("up", state_file=state_file)
        assert again.returncode == 0
        assert "already up" in again.stderr
    finally:
        down = run_command("down", state_file=state_file)
    assert down.returncode == 0, down.stderr
    assert not state_file.exists()
    assert not stack.is_running()
    assert run_command("env", state_file=state_file).returncode == 1


# ----- process life cycle -------------------------------------------------------------------------------


def test_a_server_that_cannot_start_fails_loudly_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(LocalAwsError, match="exited with code") as info:
            LocalAws.start(port=port, log_path=tmp_path / "moto.log", startup_timeout=60)

    assert "Address already in use" in str(info.value)


def test_server_stops_by_itself_when_its_parent_dies_without_cleanup() -> None:
    script = (
        "import os, sys\n"
        "from devstack.aws.local_aws import LocalAws\n"
        "stack = LocalAws.start()\n"
        "print(stack.pid, stack.endpoint_url, flush=True)\n"
        "os._exit(0)\n"  # no atexit, no stop(): as if the test process were killed
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "hack")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    pid_text, endpoint_url = result.stdout.split()
    orphan = LocalAws(endpoint_url=endpoint_url, pid=int(pid_text))

    deadline = time.monotonic() + 30
    while orphan.is_running() and time.monotonic() < deadline:
        time.sleep(0.2)

    assert not orphan.is_running()
