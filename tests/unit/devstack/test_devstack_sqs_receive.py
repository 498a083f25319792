"""The local stack's SQS patches (devstack.aws.sqs): same answers as moto, without the per-message scan of
the whole queue on receive nor a clock read per message on send, so a backlog does not make moto the
bottleneck of a load test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.sqs.models import Message, SQSBackend, sqs_backends

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


def _backlog(sqs: Any, messages: int) -> str:
    """A queue holding `messages` messages, none received yet; returns its URL."""
    url, _ = _queue(sqs, retention=345_600)
    for index in range(messages):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{index}")
    return url


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
    url = _backlog(sqs, 25)
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


def test_the_queue_counts_visible_in_flight_and_delayed_messages_as_moto_does(sqs: Any) -> None:
    url, _ = _queue(sqs, retention=345_600)
    for body in ("first", "second", "third"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    taken = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]

    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    assert len(taken) == 1
    assert counts["ApproximateNumberOfMessages"] == "2"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert counts["ApproximateNumberOfMessagesDelayed"] == "1"
    rest = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in rest) == sorted({"first", "second", "third"} - {taken[0]["Body"]})


def test_sending_does_not_read_the_clock_per_queued_message(
    sqs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _backlog(sqs, 25)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    reads: list[str] = []

    def read(what: str, answer: bool) -> property:
        def counted(_message: Any) -> bool:
            reads.append(what)
            return answer

        return property(counted)

    monkeypatch.setattr(Message, "visible", read("visible", True))
    monkeypatch.setattr(Message, "delayed", read("delayed", False))

    sqs.send_message(QueueUrl=url, MessageBody="one more")
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    assert reads == []
    assert counts["ApproximateNumberOfMessages"] == "16"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "10"
