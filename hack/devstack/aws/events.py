"""The AWS "Parameter Store Change" event, built as a pure function.

Real Parameter Store publishes this envelope to the EventBridge default bus after a parameter is created,
updated, deleted or labelled; moto does not. The local stack's emitter (devstack.aws.emitter) builds it
here so that the shape can be checked field by field without a server, and so that every producer of
local events agrees on one definition. Nothing here reads the clock or draws random ids: callers pass
them in, which keeps the function pure and the unit test exact.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

DETAIL_TYPE = "Parameter Store Change"
SOURCE = "aws.ssm"

Operation = Literal["Create", "Update", "Delete", "LabelParameterVersion"]
OPERATIONS: tuple[Operation, ...] = ("Create", "Update", "Delete", "LabelParameterVersion")


def parameter_arn(*, name: str, account_id: str, region: str) -> str:
    """The ARN AWS gives a parameter: a leading slash of a path name is not doubled."""
    resource = f"parameter{name}" if name.startswith("/") else f"parameter/{name}"
    return f"arn:aws:ssm:{region}:{account_id}:{resource}"


def event_time(moment: datetime) -> str:
    """EventBridge's `time`: ISO-8601 in UTC, whole seconds, with a `Z` suffix."""
    if moment.tzinfo is None:
        raise ValueError("event time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parameter_change_event(
    *,
    name: str,
    parameter_type: str,
    operation: Operation,
    account_id: str,
    region: str,
    event_id: str,
    moment: datetime,
    description: str | None = None,
) -> dict[str, Any]:
    """The envelope AWS delivers for one Parameter Store change, keys in AWS's order.

    `detail` holds only the name, type, operation and (when the parameter has one) the description, as
    the AWS examples show it: never the value and never the version, so consumers must read the
    parameter to learn what changed.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"unknown Parameter Store operation {operation!r}")
    detail: dict[str, Any] = {"name": name, "type": parameter_type, "operation": operation}
    if description:
        detail["description"] = description
    return {
        "version": "0",
        "id": event_id,
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account_id,
        "time": event_time(moment),
        "region": region,
        "resources": [parameter_arn(name=name, account_id=account_id, region=region)],
        "detail": detail,
    }


def new_event_id() -> str:
    """A fresh event id, a random UUID as EventBridge uses."""
    return str(uuid.uuid4())
