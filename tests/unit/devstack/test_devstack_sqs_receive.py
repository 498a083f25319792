"""The local stack's SQS receive patch (devstack.aws.sqs): same answers as moto, without the per-message
scan of the whole queue, so a backlog does not make moto the bottleneck of a load test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.sqs.models import SQSBackend, sqs_backends

from devstack.aws import sqs as aws_sqs

REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture
def sqs() -> Iterator[Any]:
    aws_sqs.install()
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


def _queue(sqs: Any, retention: int) -> tuple[str, Any]:
    url = sqs.create_queue(
        QueueName="changes", Attributes={"MessageRetentionPeriod": str(retention), "VisibilityTimeout": "30"}
    )["QueueUrl"]
    return url, sqs_backends[ACCOUNT][REGION].get_queue("changes")


def test_a_message_within_the_retention_period_is_received(sqs: Any) -> None:
    url, _ = _queue(sqs, retention=60)
    sqs.send_message(QueueUrl=url, MessageBody="fresh")

    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])

    assert [m["Body"] for m in messages] == ["fresh"]


def test_a_message_past_the_retention_period_is_not_received(sqs: Any) -> None:
    url, queue = _queue(sqs, retention=60)
    sqs.send_message(QueueUrl=url, MessageBody="stale")
    queue._messages[0].sent_timestamp -= 61_000  # sent 61 s earlier than it was

    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []


def test_receiving_does_not_build_the_queue_attributes_per_message(
    sqs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = _queue(sqs, retention=345_600)
    for index in range(25):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{index}")
    calls: list[str] = []
    original = SQSBackend.get_queue_attributes

    def counted(self: Any, queue_name: str, attribute_names: list[str]) -> Any:
        calls.append(queue_name)
        return original(self, queue_name, attribute_names)

    monkeypatch.setattr(SQSBackend, "get_queue_attributes", counted)

    received = 0
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        received += len(batch)

    assert received == 25
    assert calls == []
