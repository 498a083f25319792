"""One read of a parameter's current state, turned into a snapshot the rollout can push.

The value is read only in `value` payload mode (WithDecryption only then) and lives only in memory: it is
never logged, never put in an exception message and never written to a Kubernetes object. A parameter
that no longer exists is a DELETE at the time the caller supplies (the event's time), which orders it
after everything that came before it (see ordering.py).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from botocore.exceptions import ClientError

from refresh_operator.ordering import Operation, VersionKey


@dataclasses.dataclass(frozen=True)
class ParameterSnapshot:
    """The state of one parameter as read from Parameter Store (or its deletion)."""

    name: str
    operation: Operation
    version: int
    last_modified: datetime.datetime
    value_type: str
    value: str | None = dataclasses.field(default=None, repr=False)

    @property
    def key(self) -> VersionKey:
        return VersionKey(self.last_modified, self.version)


class ParameterStoreError(RuntimeError):
    """A read failed for a reason other than the parameter not existing (throttling, access, network)."""


def read_parameter(
    ssm: Any,
    *,
    name: str,
    with_value: bool,
    deleted_at: datetime.datetime,
) -> ParameterSnapshot:
    """GetParameter once. Blocking: call through `Blocking.call`. Never includes the value in errors."""
    try:
        response = ssm.get_parameter(Name=name, WithDecryption=with_value)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "Unknown")
        if code == "ParameterNotFound":
            return ParameterSnapshot(
                name=name,
                operation=Operation.DELETE,
                version=0,
                last_modified=deleted_at.astimezone(datetime.UTC),
                value_type="String",
            )
        raise ParameterStoreError(f"GetParameter {name} failed: {code}") from None
    parameter = response["Parameter"]
    modified = parameter["LastModifiedDate"]
    if isinstance(modified, datetime.datetime):
        last_modified = modified if modified.tzinfo else modified.replace(tzinfo=datetime.UTC)
    else:
        last_modified = datetime.datetime.fromtimestamp(float(modified), tz=datetime.UTC)
    return ParameterSnapshot(
        name=name,
        operation=Operation.UPSERT,
        version=int(parameter["Version"]),
        last_modified=last_modified.astimezone(datetime.UTC),
        value_type=str(parameter.get("Type", "String")),
        value=str(parameter["Value"]) if with_value else None,
    )
