"""Parsing and validation of the EventBridge "Parameter Store Change" envelope found in an SQS body.

The event is only a hint that a name changed: it carries no value and no version, and events are
at-least-once, unordered and best-effort. We therefore take only the name (and the event's id and time,
for correlation) and fetch the truth from Parameter Store. Anything that is not such an event is refused
with a reason a person can act on; the consumer leaves those messages to the queue's redrive policy.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

SOURCE = "aws.ssm"
DETAIL_TYPE = "Parameter Store Change"
OPERATIONS = frozenset({"Create", "Update", "Delete", "LabelParameterVersion"})
VALUE_TYPES = frozenset({"String", "StringList", "SecureString"})
MAX_NAME_LENGTH = 2048


class InvalidEvent(ValueError):
    """The message is not a usable Parameter Store change event; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ParameterChangeEvent:
    """The parts of a change event the operator uses."""

    event_id: str
    time: datetime.datetime
    name: str
    operation: str
    value_type: str | None

    @property
    def is_delete(self) -> bool:
        return self.operation == "Delete"


def _parse_time(raw: Any) -> datetime.datetime:
    if not isinstance(raw, str) or not raw:
        raise InvalidEvent("field 'time' is missing or not a string")
    try:
        parsed = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"field 'time' is not an ISO 8601 timestamp: {raw[:64]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def parse_envelope(body: str) -> ParameterChangeEvent:
    """Parse an SQS message body holding an EventBridge event; raise InvalidEvent with a reason."""
    try:
        envelope = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        raise InvalidEvent("body is not JSON") from None
    if not isinstance(envelope, dict):
        raise InvalidEvent("body is not a JSON object")
    source = envelope.get("source")
    if source != SOURCE:
        raise InvalidEvent(f"source is {str(source)[:64]!r}, expected {SOURCE!r}")
    detail_type = envelope.get("detail-type")
    if detail_type != DETAIL_TYPE:
        raise InvalidEvent(f"detail-type is {str(detail_type)[:64]!r}, expected {DETAIL_TYPE!r}")
    event_id = envelope.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidEvent("field 'id' is missing or not a string")
    detail = envelope.get("detail")
    if not isinstance(detail, dict):
        raise InvalidEvent("field 'detail' is missing or not an object")
    name = detail.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidEvent("field 'detail.name' is missing or empty")
    if len(name) > MAX_NAME_LENGTH or name != name.strip():
        raise InvalidEvent("field 'detail.name' is not a valid parameter name")
    operation = detail.get("operation")
    if operation not in OPERATIONS:
        raise InvalidEvent(
            f"field 'detail.operation' is {str(operation)[:32]!r}, expected one of {sorted(OPERATIONS)}"
        )
    value_type = detail.get("type")
    if value_type is not None and value_type not in VALUE_TYPES:
        raise InvalidEvent(
            f"field 'detail.type' is {str(value_type)[:32]!r}, expected one of {sorted(VALUE_TYPES)}"
        )
    return ParameterChangeEvent(
        event_id=event_id,
        time=_parse_time(envelope.get("time")),
        name=name,
        operation=operation,
        value_type=value_type,
    )
