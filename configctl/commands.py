"""The bodies of configctl's commands, one function each, over typed arguments and the settings object.

`cli.py` only declares the flags and calls these; each returns the exit code, or raises ConfigctlError.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import botocore.exceptions

from configctl import layout, plan, validation
from configctl.apply import apply_plan
from configctl.aws import describe_read_error, require_credentials, session_for, ssm_client
from configctl.exitcodes import ConfigctlError, ExitCode
from configctl.kube import Kube
from configctl.output import Output, apply_data, plan_data, show_apply, show_plan, show_problems
from configctl.refresh import create_refreshes
from configctl.rollback import rollback as rollback_parameter
from configctl.rollouts import from_object
from configctl.settings import ConfigctlSettings
from configctl.verify import request_verify, wait_answered
from configctl.wait import Expectation, Target, existing_names
from configctl.waiting import wait_and_report
from configrefresh_api.labels import ROLLOUT_ACTION_ANNOTATION
from configrefresh_api.phases import HALTED


def load_and_plan(
    output: Output, settings: ConfigctlSettings, *, path: Path, prefix: str, prune: bool
) -> tuple[plan.Plan, Any]:
    """Validate the tree, check credentials, read Parameter Store and compute the plan (and the client)."""
    normalized = layout.normalize_prefix(prefix)
    prefix_errors = validation.prefix_problems(normalized)
    if prefix_errors:
        raise ConfigctlError(
            f"--prefix {prefix}: " + "; ".join(prefix_errors), exit_code=ExitCode.INVALID_INPUT
        )
    source = layout.Source(path=path, prefix=normalized)
    loaded = layout.load(source)
    problems = list(loaded.problems) + validation.validate(loaded.parameters, scope=source.scope)
    if problems:
        show_problems(output, problems, scope=source.scope)
        raise ConfigctlError("", exit_code=ExitCode.INVALID_INPUT)
    session = session_for(settings)
    require_credentials(session)
    ssm = ssm_client(session, settings)
    try:
        current = plan.read_current(
            ssm,
            scope=source.scope,
            with_metadata=plan.needs_metadata(loaded.parameters),
            tags_for=frozenset(p.name for p in loaded.parameters if p.tags),
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise describe_read_error(exc, what=f"reading {source.scope} from Parameter Store") from None
    return plan.compute(desired=loaded.parameters, current=current, scope=source.scope, prune=prune), ssm


def run_apply(
    output: Output,
    settings: ConfigctlSettings,
    *,
    path: Path,
    prefix: str,
    prune: bool,
    dry_run: bool,
    wait: bool,
    wait_seconds: float,
) -> ExitCode:
    """`configctl apply`: validate, plan, write only what changed, and with `wait` wait until live."""
    the_plan, ssm = load_and_plan(output, settings, path=path, prefix=prefix, prune=prune)
    if dry_run or not the_plan.has_changes:
        if output.machine:
            output.document({"plan": plan_data(the_plan), "dryRun": dry_run})
        else:
            show_plan(output, the_plan)
            output.info("Dry run: nothing was written." if dry_run else "Nothing to do.")
        return ExitCode.OK
    kube = Kube(settings) if wait else None
    if not output.machine:
        show_plan(output, the_plan)
    earlier = existing_names(kube, [c.name for c in the_plan.writes]) if kube is not None else frozenset()
    result = apply_plan(ssm, the_plan)
    report: dict[str, Any] = {"plan": plan_data(the_plan), "apply": apply_data(result)}
    if not output.machine:
        show_apply(output, the_plan, result)
    if not result.ok:
        if output.machine:
            output.document(report)
        return ExitCode.APPLY_PARTIAL
    code = ExitCode.OK
    if kube is not None:
        targets = [Target(w.name, w.version) for w in result.written if w.version is not None]
        code, report["wait"] = wait_and_report(output, kube, targets, timeout=wait_seconds, ignore=earlier)
    if output.machine:
        output.document(report)
    return code


def run_diff(
    output: Output, settings: ConfigctlSettings, *, path: Path, prefix: str, prune: bool, exit_code: bool
) -> ExitCode:
    """`configctl diff`: the plan as a diff; with `exit_code`, CHANGES_PENDING when there is one."""
    the_plan, _ = load_and_plan(output, settings, path=path, prefix=prefix, prune=prune)
    show_plan(output, the_plan)
    return ExitCode.CHANGES_PENDING if exit_code and the_plan.has_changes else ExitCode.OK


def run_refresh(
    output: Output,
    settings: ConfigctlSettings,
    *,
    parameter: str,
    route: str | None,
    wait: bool,
    wait_seconds: float,
) -> ExitCode:
    """`configctl refresh`: a manual ConfigRefresh of the parameter's current version."""
    session = session_for(settings)
    require_credentials(session)
    kube = Kube(settings)
    created = [
        from_object(o)
        for o in create_refreshes(kube, ssm_client(session, settings), name=parameter, route=route)
    ]
    report: dict[str, Any] = {"created": [r.as_dict() for r in created]}
    for r in created:
        output.info(f"created {r.object_name} ({r.parameter} v{r.version}, route {r.route})")
    code = ExitCode.OK
    if wait:
        expected = [Expectation(Target(r.parameter, r.version or 0), r.route, r.object_name) for r in created]
        code, report["wait"] = wait_and_report(output, kube, [], timeout=wait_seconds, expected=expected)
    if output.machine:
        output.document(report)
    return code


def run_verify(
    output: Output, kube: Kube, *, routes: list[str] | None, wait: bool, timeout: str, wait_seconds: float
) -> ExitCode:
    """`configctl verify`: ask the operator for a resync of the routes and report its answers."""
    tokens = request_verify(kube, routes)
    report: dict[str, Any] = {"namespace": kube.namespace, "requested": sorted(tokens)}
    code = ExitCode.OK
    if wait:
        answered = wait_answered(kube, tokens, timeout=wait_seconds)
        report["routes"] = answered
        for name in sorted(tokens):
            resync = answered.get(name)
            if resync is None:
                output.info(f"{name}: no answer from the operator within {timeout}")
                code = ExitCode.WAIT_TIMEOUT
            elif resync.get("error"):
                output.info(f"{name}: resync failed: {resync['error']}")
                code = ExitCode.ERROR if code is ExitCode.OK else code
            else:
                output.info(
                    f"{name}: {resync.get('parameters', 0)} parameter(s) checked, "
                    f"{resync.get('recovered', 0)} missed change(s) recovered, "
                    f"{resync.get('repairedInstances', 0)} instance(s) repaired"
                )
    else:
        for name in sorted(tokens):
            output.info(f"{name}: resync requested")
    if output.machine:
        output.document(report)
    return code


def run_rollback(
    output: Output,
    settings: ConfigctlSettings,
    *,
    parameter: str,
    to_version: int | None,
    wait: bool,
    wait_seconds: float,
) -> ExitCode:
    """`configctl rollback`: write an earlier version's value back as a new version."""
    session = session_for(settings)
    require_credentials(session)
    done = rollback_parameter(ssm_client(session, settings), parameter, to_version=to_version)
    output.info(
        f"{parameter}: v{done.restored_version}'s value written as v{done.new_version} "
        f"(was v{done.from_version})"
    )
    report: dict[str, Any] = {
        "parameter": parameter,
        "fromVersion": done.from_version,
        "restoredVersion": done.restored_version,
        "newVersion": done.new_version,
    }
    code = ExitCode.OK
    if wait:
        code, report["wait"] = wait_and_report(
            output, Kube(settings), [Target(parameter, done.new_version)], timeout=wait_seconds
        )
    if output.machine:
        output.document(report)
    return code


def run_rollout_action(output: Output, kube: Kube, *, action: str, name: str) -> ExitCode:
    """`configctl rollout resume|abort`: annotate a Halted ConfigRefresh with the action for the operator."""
    found = kube.get_refresh(name)
    if found is None:
        raise ConfigctlError(
            f"ConfigRefresh {name} not found in {kube.namespace}", exit_code=ExitCode.NOT_FOUND
        )
    phase = (found.get("status") or {}).get("phase")
    if phase != HALTED:
        raise ConfigctlError(
            f"ConfigRefresh {name} is {phase or 'Pending'}, not Halted", exit_code=ExitCode.USAGE
        )
    token = f"{action}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"
    kube.annotate_refresh(name, {ROLLOUT_ACTION_ANNOTATION: token})
    output.info(f"{name}: {action} requested")
    if output.machine:
        output.document({"namespace": kube.namespace, "refresh": name, "action": action})
    return ExitCode.OK
