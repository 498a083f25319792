"""The plan: what applying the tree would change in Parameter Store, and nothing more.

Parameter Store is read once per apply, under the source's scope, with GetParametersByPath (recursive,
decrypted, paginated). A parameter whose value and type already match is `unchanged` and is never
rewritten: a rewrite would create a version, fire a change event and roll the fleet for nothing.
Description, tier and KMS key are compared only when the tree sets them, and only then is
DescribeParameters called (its throughput is much lower than GetParametersByPath's). Tags are read
(ListTagsForResource) only for existing parameters whose entry declares tags; declared tags are added or
updated, tags set by others are left alone, and a tags-only change writes no new version.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import Any

from configctl.model import PARAMETER_TYPES, CurrentParameter, DesiredParameter, ParameterType


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"


@dataclasses.dataclass(frozen=True)
class Change:
    """One line of the plan; `fields` says what differs for an update."""

    action: Action
    name: str
    desired: DesiredParameter | None
    current: CurrentParameter | None
    fields: tuple[str, ...] = ()

    @property
    def secret(self) -> bool:
        """Either side is a SecureString: both sides are then masked."""
        return any(p is not None and p.secret for p in (self.desired, self.current))


@dataclasses.dataclass(frozen=True)
class Plan:
    scope: str
    changes: tuple[Change, ...]
    unmanaged: tuple[str, ...] = ()
    """Parameters under the scope but not in the tree (deleted only with --prune)."""

    def of(self, action: Action) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is action)

    @property
    def writes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action in (Action.CREATE, Action.UPDATE))

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.UNCHANGED for c in self.changes)

    def counts(self) -> dict[str, int]:
        return {action.value: len(self.of(action)) for action in Action}


def _path_for(scope: str) -> str:
    return scope.rstrip("/") or "/"


def _parameter_type(raw: str) -> ParameterType:
    for known in PARAMETER_TYPES:
        if raw == known:
            return known
    return "String"


def read_current(
    ssm: Any,
    *,
    scope: str,
    with_metadata: bool,
    tags_for: frozenset[str] = frozenset(),
) -> dict[str, CurrentParameter]:
    """Every parameter under `scope`, decrypted; with metadata (description, tier, key) if asked,
    and with tags for the names in `tags_for` that exist."""
    metadata: dict[str, dict[str, Any]] = {}
    if with_metadata:
        describe = ssm.get_paginator("describe_parameters")
        filters = [{"Key": "Path", "Option": "Recursive", "Values": [_path_for(scope)]}]
        for page in describe.paginate(ParameterFilters=filters):
            for item in page.get("Parameters", []):
                metadata[item["Name"]] = item
    current: dict[str, CurrentParameter] = {}
    paginator = ssm.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=_path_for(scope), Recursive=True, WithDecryption=True):
        for item in page.get("Parameters", []):
            name = item["Name"]
            if not name.startswith(scope):
                continue
            meta = metadata.get(name, {})
            current[name] = CurrentParameter(
                name=name,
                value=item["Value"],
                type=_parameter_type(item["Type"]),
                version=int(item["Version"]),
                last_modified=item.get("LastModifiedDate"),
                description=meta.get("Description"),
                tier=meta.get("Tier"),
                kms_key_id=meta.get("KeyId"),
            )
    for name in sorted(tags_for & current.keys()):
        listed = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name).get("TagList", [])
        tags = tuple(sorted((t["Key"], t["Value"]) for t in listed))
        current[name] = dataclasses.replace(current[name], tags=tags)
    return current


def _differences(desired: DesiredParameter, current: CurrentParameter) -> tuple[str, ...]:
    fields: list[str] = []
    if desired.value != current.value:
        fields.append("value")
    if desired.type != current.type:
        fields.append("type")
    if desired.description is not None and desired.description != (current.description or ""):
        fields.append("description")
    if desired.tier in ("Standard", "Advanced") and current.tier is not None and desired.tier != current.tier:
        fields.append("tier")
    if (
        desired.secret
        and desired.kms_key_id is not None
        and current.kms_key_id is not None
        and desired.kms_key_id != current.kms_key_id
    ):
        fields.append("kmsKeyId")
    if desired.tags and current.tags is not None and not set(desired.tags) <= set(current.tags):
        fields.append("tags")
    return tuple(fields)


def needs_metadata(desired: Iterable[DesiredParameter]) -> bool:
    return any(p.description is not None or p.tier is not None or p.kms_key_id is not None for p in desired)


def compute(
    *,
    desired: Iterable[DesiredParameter],
    current: Mapping[str, CurrentParameter],
    scope: str,
    prune: bool,
) -> Plan:
    """Compare the tree with Parameter Store; sorted by name, deletes last."""
    changes: list[Change] = []
    wanted = {p.name: p for p in desired}
    for name in sorted(wanted):
        want = wanted[name]
        have = current.get(name)
        if have is None:
            changes.append(Change(Action.CREATE, name, want, None))
            continue
        fields = _differences(want, have)
        action = Action.UPDATE if fields else Action.UNCHANGED
        changes.append(Change(action, name, want, have, fields))
    extra = tuple(sorted(name for name in current if name not in wanted))
    if prune:
        changes.extend(Change(Action.DELETE, name, None, current[name]) for name in extra)
        extra = ()
    return Plan(scope=scope, changes=tuple(changes), unmanaged=extra)
