"""The Parameter Store change envelope the local stack emits matches AWS's, field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devstack.aws.events import (
    OPERATIONS,
    Operation,
    event_time,
    new_event_id,
    parameter_arn,
    parameter_change_event,
)
from devstack.aws.provision import event_pattern

MOMENT = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)
NAME = "/config-service/acme/orders/db_url"


@pytest.mark.parametrize("operation", OPERATIONS)
def test_envelope_has_every_aws_field_for_each_operation(operation: Operation) -> None:
    event = parameter_change_event(
        name=NAME,
        parameter_type="String",
        operation=operation,
        account_id="123456789012",
        region="us-east-1",
        event_id="6a7e4feb-b491-4cf7-a9f1-bf3703497718",
        moment=MOMENT,
    )

    assert list(event) == [
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
    assert event["version"] == "0"
    assert event["id"] == "6a7e4feb-b491-4cf7-a9f1-bf3703497718"
    assert event["detail-type"] == "Parameter Store Change"
    assert event["source"] == "aws.ssm"
    assert event["account"] == "123456789012"
    assert event["time"] == "2026-11-26T10:00:00Z"
    assert event["region"] == "us-east-1"
    assert event["resources"] == [
        "arn:aws:ssm:us-east-1:123456789012:parameter/config-service/acme/orders/db_url"
    ]
    assert event["detail"] == {"name": NAME, "type": "String", "operation": operation}


@pytest.mark.parametrize("parameter_type", ["String", "StringList", "SecureString"])
def test_detail_carries_the_parameter_type(parameter_type: str) -> None:
    event = parameter_change_event(
        name=NAME,
        parameter_type=parameter_type,
        operation="Update",
        account_id="123456789012",
        region="eu-west-1",
        event_id=new_event_id(),
        moment=MOMENT,
    )

    assert event["detail"]["type"] == parameter_type
    assert event["region"] == "eu-west-1"
    assert event["resources"][0].startswith("arn:aws:ssm:eu-west-1:123456789012:parameter/")


def test_description_appears_only_when_the_parameter_has_one() -> None:
    common = {
        "name": NAME,
        "parameter_type": "String",
        "operation": "Create",
        "account_id": "123456789012",
        "region": "us-east-1",
        "event_id": new_event_id(),
        "moment": MOMENT,
    }

    with_description = parameter_change_event(**common, description="orders database")  # type: ignore[arg-type]
    without = parameter_change_event(**common)  # type: ignore[arg-type]

    assert with_description["detail"]["description"] == "orders database"
    assert "description" not in without["detail"]


def test_event_never_carries_a_value_or_version() -> None:
    event = parameter_change_event(
        name=NAME,
        parameter_type="SecureString",
        operation="Update",
        account_id="123456789012",
        region="us-east-1",
        event_id=new_event_id(),
        moment=MOMENT,
    )

    assert set(event["detail"]) == {"name", "type", "operation"}


@pytest.mark.parametrize(
    ("name", "arn"),
    [
        ("/a/b", "arn:aws:ssm:us-east-1:111122223333:parameter/a/b"),
        ("plain", "arn:aws:ssm:us-east-1:111122223333:parameter/plain"),
    ],
)
def test_arn_does_not_double_the_leading_slash(name: str, arn: str) -> None:
    assert parameter_arn(name=name, account_id="111122223333", region="us-east-1") == arn


def test_time_is_utc_whole_seconds_with_z() -> None:
    two_hours_east = timezone(timedelta(hours=2))

    assert (
        event_time(datetime(2026, 11, 26, 12, 0, 5, 999999, tzinfo=two_hours_east)) == "2026-11-26T10:00:05Z"
    )


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        event_time(datetime(2026, 11, 26, 10, 0, 0))


def test_unknown_operation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Parameter Store operation"):
        parameter_change_event(
            name=NAME,
            parameter_type="String",
            operation="Rename",  # type: ignore[arg-type]
            account_id="123456789012",
            region="us-east-1",
            event_id=new_event_id(),
            moment=MOMENT,
        )


def test_event_ids_are_fresh_uuids() -> None:
    first, second = new_event_id(), new_event_id()

    assert first != second
    assert len(first) == 36
    assert first.count("-") == 4


def test_rule_pattern_filters_on_source_detail_type_and_name_prefix() -> None:
    assert event_pattern("/config-service/") == {
        "source": ["aws.ssm"],
        "detail-type": ["Parameter Store Change"],
        "detail": {"name": [{"prefix": "/config-service/"}]},
    }
