"""`configctl rollback PARAMETER`: put the previous version's value back, as a new version.

Why a write and not a ConfigRefresh of the old version: instances only move forward (a refresh whose
version is not newer than what they hold is acknowledged as Stale and ignored), and an instance that
restarts or re-reads on its TTL bootstraps from Parameter Store. Pushing old bytes to the fleet while
Parameter Store keeps the bad value would be undone by the next bootstrap or TTL re-read. So rollback
reads the version before the current one with GetParameterHistory (with decryption: the value is written
back, never printed) and writes it with PutParameter (same type, Overwrite) as version N+1. Parameter
Store and the fleet then agree, the change event makes a normal rollout (progressive if the route says
so), and Parameter Store's history records the rollback.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import botocore.exceptions

from configctl.aws import error_code
from configctl.exitcodes import ConfigctlError, ExitCode


@dataclasses.dataclass(frozen=True)
class Rollback:
    parameter: str
    from_version: int
    restored_version: int
    new_version: int


def rollback(ssm: Any, name: str, *, to_version: int | None = None) -> Rollback:
    """Write the value of `to_version` (default: the version before the current one) as a new version."""
    try:
        history: list[dict[str, Any]] = []
        for page in ssm.get_paginator("get_parameter_history").paginate(Name=name, WithDecryption=True):
            history.extend(page.get("Parameters", []))
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc)
        if code == "ParameterNotFound":
            raise ConfigctlError(f"{name} does not exist", exit_code=ExitCode.NOT_FOUND) from None
        raise ConfigctlError(
            f"GetParameterHistory {name} failed: {code}", exit_code=ExitCode.AWS_ERROR
        ) from None
    history.sort(key=lambda entry: int(entry["Version"]))
    if not history:
        raise ConfigctlError(f"{name} has no history", exit_code=ExitCode.NOT_FOUND)
    current = history[-1]
    if to_version is None:
        if len(history) < 2:
            raise ConfigctlError(
                f"{name} has no previous version to roll back to", exit_code=ExitCode.NOT_FOUND
            )
        target = history[-2]
    else:
        found = [entry for entry in history if int(entry["Version"]) == to_version]
        if not found:
            raise ConfigctlError(
                f"{name} has no version {to_version} in its history", exit_code=ExitCode.NOT_FOUND
            )
        target = found[0]
    request: dict[str, Any] = {
        "Name": name,
        "Value": target["Value"],
        "Type": target.get("Type", "String"),
        "Overwrite": True,
    }
    if target.get("Type") == "SecureString" and target.get("KeyId"):
        request["KeyId"] = target["KeyId"]
    try:
        answer = ssm.put_parameter(**request)
    except botocore.exceptions.ClientError as exc:
        raise ConfigctlError(
            f"PutParameter {name} failed: {error_code(exc)}", exit_code=ExitCode.AWS_ERROR
        ) from None
    return Rollback(
        parameter=name,
        from_version=int(current["Version"]),
        restored_version=int(target["Version"]),
        new_version=int(answer["Version"]),
    )
