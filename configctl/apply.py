"""Writing a plan: only what changed, in name order, stopping at the first failure and saying so.

A failure midway is the case a pipeline must be able to reason about, so the result names every
parameter written (with the version Parameter Store gave it), the one that failed (with the AWS error
code, never its value) and every one not attempted. Creates carry tags (PutParameter refuses tags
together with Overwrite); updates overwrite; a change of declared tags on an existing parameter goes
through AddTagsToResource, which creates no version and so no rollout. Deletes (--prune) come last,
in batches of ten.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import botocore.exceptions

from configctl.aws import error_code
from configctl.masking import scrub
from configctl.plan import Action, Change, Plan

_DELETE_BATCH = 10


@dataclasses.dataclass(frozen=True)
class Written:
    name: str
    action: Action
    version: int | None
    """The new version (None for deletes and tags-only updates: nothing to roll out)."""


@dataclasses.dataclass(frozen=True)
class Failure:
    name: str
    action: Action
    error: str
    """AWS error code and message, with any secret value removed."""


@dataclasses.dataclass(frozen=True)
class ApplyResult:
    written: tuple[Written, ...]
    failed: Failure | None
    not_written: tuple[Change, ...]

    @property
    def ok(self) -> bool:
        return self.failed is None


def _put_request(change: Change) -> dict[str, Any]:
    desired = change.desired
    assert desired is not None
    request: dict[str, Any] = {"Name": desired.name, "Value": desired.value, "Type": desired.type}
    if desired.description is not None:
        request["Description"] = desired.description
    if desired.tier is not None:
        request["Tier"] = desired.tier
    if desired.kms_key_id is not None:
        request["KeyId"] = desired.kms_key_id
    if change.action is Action.CREATE:
        if desired.tags:
            request["Tags"] = [{"Key": k, "Value": v} for k, v in desired.tags]
    else:
        request["Overwrite"] = True
    return request


def _needs_put(change: Change) -> bool:
    return change.action is Action.CREATE or any(f != "tags" for f in change.fields)


def _write(ssm: Any, change: Change) -> int | None:
    """Put the parameter if anything but tags changed; add declared tags to an existing one."""
    version: int | None = None
    if _needs_put(change):
        version = int(ssm.put_parameter(**_put_request(change))["Version"])
    desired = change.desired
    if change.action is Action.UPDATE and "tags" in change.fields and desired is not None:
        ssm.add_tags_to_resource(
            ResourceType="Parameter",
            ResourceId=change.name,
            Tags=[{"Key": k, "Value": v} for k, v in desired.tags],
        )
    return version


def _failure(change: Change, exc: Exception) -> Failure:
    secrets = [p.value for p in (change.desired, change.current) if p is not None and p.secret]
    if isinstance(exc, botocore.exceptions.ClientError):
        detail = str(exc.response.get("Error", {}).get("Message", ""))
    else:
        detail = str(exc)
    return Failure(change.name, change.action, f"{error_code(exc)}: {scrub(detail, values=secrets)}")


def apply_plan(ssm: Any, plan: Plan) -> ApplyResult:
    """Apply creates and updates, then deletes; stop at the first error."""
    written: list[Written] = []
    pending = list(plan.writes)
    while pending:
        change = pending[0]
        try:
            version = _write(ssm, change)
        except Exception as exc:  # any failure stops the apply and is reported, never raised
            return ApplyResult(
                tuple(written), _failure(change, exc), tuple(pending[1:]) + plan.of(Action.DELETE)
            )
        written.append(Written(change.name, change.action, version))
        pending.pop(0)
    deletes = list(plan.of(Action.DELETE))
    while deletes:
        batch = deletes[:_DELETE_BATCH]
        try:
            response = ssm.delete_parameters(Names=[c.name for c in batch])
        except Exception as exc:
            return ApplyResult(tuple(written), _failure(batch[0], exc), tuple(deletes[1:]))
        gone = set(response.get("DeletedParameters", []))
        invalid = set(response.get("InvalidParameters", []))
        for change in batch:
            if change.name in gone or change.name in invalid:
                # Invalid means "already gone": the goal of the delete holds either way.
                written.append(Written(change.name, Action.DELETE, None))
        del deletes[: len(batch)]
    return ApplyResult(tuple(written), None, ())
