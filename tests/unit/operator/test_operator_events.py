"""The consumer accepts exactly the EventBridge Parameter Store Change envelope, and says why it refuses."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from refresh_operator.events import InvalidEvent, parse_envelope


def envelope(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "Parameter Store Change",
        "source": "aws.ssm",
        "account": "123456789012",
        "time": "2026-11-26T10:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ssm:us-east-1:123456789012:parameter/config-service/acme/orders/db_url"],
        "detail": {"name": "/config-service/acme/orders/db_url", "type": "String", "operation": "Update"},
    }
    event.update(overrides)
    return event


def detail(**overrides: Any) -> dict[str, Any]:
    value = {"name": "/config-service/acme/orders/db_url", "type": "String", "operation": "Update"}
    value.update(overrides)
    return value


@pytest.mark.parametrize(
    ("event", "operation", "value_type"),
    [
        (envelope(), "Update", "String"),
        (envelope(detail=detail(operation="Create", type="SecureString")), "Create", "SecureString"),
        (envelope(detail=detail(operation="Delete")), "Delete", "String"),
        (
            envelope(detail=detail(operation="LabelParameterVersion", type="StringList")),
            "LabelParameterVersion",
            "StringList",
        ),
        (envelope(detail={"name": "/a/b", "operation": "Update"}), "Update", None),
    ],
)
def test_a_parameter_store_change_is_accepted(
    event: dict[str, Any], operation: str, value_type: str | None
) -> None:
    parsed = parse_envelope(json.dumps(event))
    assert parsed.name == event["detail"]["name"]
    assert parsed.operation == operation
    assert parsed.value_type == value_type
    assert parsed.event_id == event["id"]
    assert parsed.time == datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.UTC)
    assert parsed.is_delete == (operation == "Delete")


@pytest.mark.parametrize(
    ("body", "reason_mentions"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps(envelope(source="aws.ec2")), "source"),
        (json.dumps({k: v for k, v in envelope().items() if k != "source"}), "source"),
        (json.dumps(envelope(**{"detail-type": "EC2 Instance State-change Notification"})), "detail-type"),
        (json.dumps(envelope(id="")), "'id'"),
        (json.dumps(envelope(detail="a string")), "'detail'"),
        (json.dumps(envelope(detail=detail(name=""))), "detail.name"),
        (json.dumps(envelope(detail=detail(name=None))), "detail.name"),
        (json.dumps(envelope(detail=detail(name=" /padded "))), "detail.name"),
        (json.dumps(envelope(detail=detail(name="/x" * 2000))), "detail.name"),
        (json.dumps(envelope(detail=detail(operation="Explode"))), "detail.operation"),
        (json.dumps(envelope(detail=detail(operation=None))), "detail.operation"),
        (json.dumps(envelope(detail=detail(type="Binary"))), "detail.type"),
        (json.dumps(envelope(time="yesterday")), "'time'"),
        (json.dumps(envelope(time=None)), "'time'"),
    ],
)
def test_anything_else_is_refused_with_a_reason(body: str, reason_mentions: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_envelope(body)
    assert reason_mentions in caught.value.reason


def test_a_refusal_never_echoes_a_long_payload() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_envelope(json.dumps(envelope(source="s" * 10_000)))
    assert len(caught.value.reason) < 200
