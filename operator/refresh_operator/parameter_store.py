"""One read of a parameter's current state, turned into a snapshot the rollout can push.

The value is read only in `value` payload mode (WithDecryption only then) and lives only in memory: it is
never logged, never put in an exception message and never written to a Kubernetes object. A parameter
that no longer exists is a DELETE at the time the caller supplies (the event's time), which orders it
after everything that came before it (see configrefresh_api/versions.py).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from configrefresh_api.versions import Operation, VersionKey


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
    except BotoCoreError as error:  # read timeout, refused or reset connection: no answer, so no code
        raise ParameterStoreError(f"GetParameter {name} failed: {type(error).__name__}") from None
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


def _utc(modified: Any) -> datetime.datetime:
    if isinstance(modified, datetime.datetime):
        moment = modified if modified.tzinfo else modified.replace(tzinfo=datetime.UTC)
    else:
        moment = datetime.datetime.fromtimestamp(float(modified), tz=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def hierarchy_path(prefix: str) -> str:
    """The Parameter Store path to list for a name prefix: up to its last "/" (a route prefix such as
    "/app/ord" is a string prefix, while GetParametersByPath takes whole path segments)."""
    path = prefix[: prefix.rfind("/") + 1]
    return path.rstrip("/") or "/"


def list_parameters(ssm: Any, *, prefix: str, with_value: bool) -> tuple[list[ParameterSnapshot], int]:
    """Every parameter whose name starts with `prefix` (GetParametersByPath, recursive, 10 per page), and
    the number of calls made. Blocking: call through `Blocking.call`. Values only when `with_value`."""
    found: list[ParameterSnapshot] = []
    calls = 0
    token: str | None = None
    while True:
        request: dict[str, Any] = {
            "Path": hierarchy_path(prefix),
            "Recursive": True,
            "WithDecryption": with_value,
            "MaxResults": 10,
        }
        if token:
            request["NextToken"] = token
        calls += 1
        try:
            response = ssm.get_parameters_by_path(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "Unknown")
            raise ParameterStoreError(f"GetParametersByPath {prefix} failed: {code}") from None
        except BotoCoreError as error:  # read timeout, refused or reset connection
            raise ParameterStoreError(
                f"GetParametersByPath {prefix} failed: {type(error).__name__}"
            ) from None
        for parameter in response.get("Parameters", []):
            name = str(parameter["Name"])
            if not name.startswith(prefix):
                continue
            found.append(
                ParameterSnapshot(
                    name=name,
                    operation=Operation.UPSERT,
                    version=int(parameter["Version"]),
                    last_modified=_utc(parameter["LastModifiedDate"]),
                    value_type=str(parameter.get("Type", "String")),
                    value=str(parameter["Value"]) if with_value else None,
                )
            )
        token = response.get("NextToken")
        if not token:
            return found, calls


def deletion_time(event_time: datetime.datetime) -> datetime.datetime:
    """When a deletion is ordered: the last microsecond of the event's time.

    EventBridge's `time` has whole seconds, while LastModifiedDate has milliseconds, so the write that
    was deleted may carry a later timestamp within the same second than the event. The deletion happened
    before the end of that second, after every write it removed. Never use this alone for a read that
    found nothing: see `deletion_key_time`.
    """
    if event_time.microsecond:
        return event_time
    return event_time + datetime.timedelta(microseconds=999_999)


def deletion_key_time(event_time: datetime.datetime, observed: datetime.datetime) -> datetime.datetime:
    """When a read that found nothing orders its deletion: the end of the event's second, but never later
    than the moment that read started (`observed`).

    The parameter was already gone when the read started, so a re-create after it carries a later
    LastModifiedDate. Without the cap, a delete observed early in a second (or a redelivered message for
    an already deleted name) outranked a re-create later in that same second, and every instance kept
    the tombstone for good: versions only move forward and a tombstone beats anything older.
    """
    return min(deletion_time(event_time), observed.astimezone(datetime.UTC))
