"""`configctl`: apply a config tree to Parameter Store and wait until it is live on every instance.

This module only wires the command line to the steps (layout -> validation -> plan -> apply -> wait) and
maps every outcome to an exit code from `exitcodes`. Each step lives in its own module.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import botocore.exceptions
import typer

from configctl import layout, plan, validation
from configctl.apply import apply_plan
from configctl.aws import AwsSettings, describe_read_error, require_credentials, session_for, ssm_client
from configctl.exitcodes import ConfigctlError, ExitCode, help_table
from configctl.kube import Kube, KubeSettings
from configctl.output import Mode, Output, apply_data, plan_data, show_apply, show_plan, show_problems
from configctl.refresh import create_refreshes
from configctl.rollback import rollback as rollback_parameter
from configctl.rollouts import FAILED_PHASES, from_object
from configctl.status import list_rollouts
from configctl.verify import request_verify, wait_answered
from configctl.view import ProgressView, Row, row_for, show_failed_instances, show_rollouts
from configctl.wait import Expectation, Target, Tracked, existing_names, expectations, wait_for
from configrefresh_api.labels import ROLLOUT_ACTION_ANNOTATION
from configrefresh_api.phases import HALTED

# "\b" keeps click from re-wrapping the paragraph that follows it.
EPILOG = "\b\nExit codes:\n" + "\n".join(f"  {line}" for line in help_table().splitlines())

app = typer.Typer(
    help="Apply a directory of config to AWS Parameter Store and wait until every instance serves it.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# ---- shared options -----------------------------------------------------------------------------------

PathArg = Annotated[Path, typer.Argument(help="A config tree (directory) or one YAML/JSON file.")]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="Parameter Store path the tree maps under.")]
PruneOpt = Annotated[
    bool, typer.Option("--prune", help="Delete parameters under the prefix that the tree lacks.")
]
OutputOpt = Annotated[
    Mode,
    typer.Option(
        "--output", "-o", help="auto (table on a terminal, plain otherwise), table, plain, json, yaml."
    ),
]
RegionOpt = Annotated[str | None, typer.Option("--region", envvar="AWS_REGION", help="AWS region.")]
EndpointOpt = Annotated[
    str | None,
    typer.Option("--endpoint-url", envvar="AWS_ENDPOINT_URL", help="AWS endpoint (a local stack)."),
]
ProfileOpt = Annotated[str | None, typer.Option("--profile", envvar="AWS_PROFILE", help="AWS profile.")]
KubeconfigOpt = Annotated[
    str | None, typer.Option("--kubeconfig", envvar="KUBECONFIG", help="kubeconfig file (for --wait/status).")
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context.")]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--namespace", "-n", help="Namespace of the ConfigRoutes/ConfigRefreshes (default: context's)."
    ),
]
TimeoutOpt = Annotated[str, typer.Option("--timeout", help="How long --wait waits: 90s, 2m, 1h.")]


def parse_duration(text: str) -> float:
    """`90`, `90s`, `2m`, `1h`, `1m30s` -> seconds."""
    match = re.fullmatch(
        r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text
    )
    if not text.strip() or match is None or not any(match.groups()):
        raise typer.BadParameter(f"not a duration: {text!r} (use 90s, 2m, 1h)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _run(output: Output, body: Callable[[], ExitCode]) -> None:
    """Run a command body; every ConfigctlError becomes its message on stderr and its exit code."""
    try:
        code = body()
    except ConfigctlError as exc:
        output.error(exc.message)
        code = exc.exit_code
    except KeyboardInterrupt:
        output.error("interrupted")
        code = ExitCode.ERROR
    raise typer.Exit(int(code))


# ---- apply / diff -------------------------------------------------------------------------------------


def _load_and_plan(
    output: Output,
    *,
    path: Path,
    prefix: str,
    prune: bool,
    aws: AwsSettings,
) -> tuple[plan.Plan, Any]:
    """Validate the tree, check credentials, read Parameter Store and compute the plan."""
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
        raise typer.Exit(int(ExitCode.INVALID_INPUT))
    session = session_for(aws)
    require_credentials(session)
    ssm = ssm_client(session, aws)
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


@app.command(
    epilog="\b\nExample:\n  configctl apply config/tenants --prefix /config-service/ --wait --timeout 2m\n\n"
    + EPILOG
)
def apply(
    path: PathArg,
    prefix: PrefixOpt,
    prune: PruneOpt = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and exit; write nothing.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="After writing, wait until every rollout is final.")
    ] = False,
    timeout: TimeoutOpt = "2m",
    output_mode: OutputOpt = Mode.AUTO,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Apply a config tree: validate, plan, write only what changed (and with --wait, wait until live)."""
    output = Output(output_mode)
    wait_seconds = parse_duration(timeout)

    def body() -> ExitCode:
        the_plan, ssm = _load_and_plan(
            output, path=path, prefix=prefix, prune=prune, aws=AwsSettings(region, endpoint_url, profile)
        )
        if dry_run or not the_plan.has_changes:
            if output.machine:
                output.document({"plan": plan_data(the_plan), "dryRun": dry_run})
            else:
                show_plan(output, the_plan)
                output.info("Dry run: nothing was written." if dry_run else "Nothing to do.")
            return ExitCode.OK
        kube = Kube(KubeSettings(kubeconfig, context, namespace)) if wait else None
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
            code, report["wait"] = _wait(output, kube, targets, timeout=wait_seconds, ignore=earlier)
        if output.machine:
            output.document(report)
        return code

    _run(output, body)


def _rows(tracked: Sequence[Tracked]) -> list[Row]:
    rows = []
    for t in tracked:
        if t.rollout is not None:
            rows.append(row_for(t.rollout))
        else:
            e = t.expectation
            route = e.route or "any route"
            rows.append(
                Row(
                    f"{e.target.name}@{e.target.version}@{route}",
                    f"{e.target.name} v{e.target.version} [{route}]",
                    "NotCreated",
                    0,
                    0,
                )
            )
    return rows


def _wait(
    output: Output,
    kube: Kube,
    targets: Sequence[Target],
    *,
    timeout: float,
    expected: Sequence[Expectation] | None = None,
    ignore: frozenset[str] = frozenset(),
) -> tuple[ExitCode, dict[str, Any]]:
    uncovered: list[Target] = []
    if expected is None:
        expected, uncovered = expectations(kube, targets)
    for target in uncovered:
        output.info(f"warning: no ConfigRoute in {kube.namespace} claims {target.name}; nothing to wait for")
    started = time.monotonic()
    with ProgressView(output) as view:
        code, tracked = wait_for(
            kube, expected, timeout=timeout, ignore=ignore, on_progress=lambda t: view.update(_rows(t))
        )
    elapsed = time.monotonic() - started
    rollouts = [t.rollout for t in tracked if t.rollout is not None]
    failed = [r for r in rollouts if r.phase in FAILED_PHASES]
    pending = [t for t in tracked if not t.final]
    if code is ExitCode.OK:
        output.info(f"Live: {len(tracked)} rollout(s) Succeeded in {elapsed:.1f}s.")
    elif code is ExitCode.ROLLOUT_FAILED:
        show_failed_instances(output, failed)
        output.error(f"{len(failed)} rollout(s) did not reach every instance.")
    else:
        for t in pending:
            what = t.rollout.phase if t.rollout is not None else "no ConfigRefresh yet"
            output.error(f"timed out: {t.expectation.target.name} v{t.expectation.target.version} ({what})")
        if failed:
            show_failed_instances(output, failed)
        output.error(f"timed out after {timeout:.0f}s: {len(pending)} rollout(s) not final.")
    data = {
        "result": code.name,
        "elapsedSeconds": round(elapsed, 3),
        "rollouts": [r.as_dict() for r in rollouts],
        "missing": [
            {
                "name": t.expectation.target.name,
                "version": t.expectation.target.version,
                "route": t.expectation.route,
            }
            for t in tracked
            if t.rollout is None
        ],
        "uncovered": [{"name": t.name, "version": t.version} for t in uncovered],
    }
    return code, data


@app.command(
    epilog="\b\nExample:\n  configctl diff config/tenants --prefix /config-service/ --prune\n\n" + EPILOG
)
def diff(
    path: PathArg,
    prefix: PrefixOpt,
    prune: PruneOpt = False,
    exit_code: Annotated[
        bool,
        typer.Option("--exit-code", help=f"Exit {int(ExitCode.CHANGES_PENDING)} when the plan has changes."),
    ] = False,
    output_mode: OutputOpt = Mode.AUTO,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Show what apply would change, as a diff (secret values masked); writes nothing."""
    output = Output(output_mode)

    def body() -> ExitCode:
        the_plan, _ = _load_and_plan(
            output, path=path, prefix=prefix, prune=prune, aws=AwsSettings(region, endpoint_url, profile)
        )
        show_plan(output, the_plan)
        return ExitCode.CHANGES_PENDING if exit_code and the_plan.has_changes else ExitCode.OK

    _run(output, body)


# ---- status / refresh ---------------------------------------------------------------------------------


@app.command(
    epilog="\b\nExamples:\n  configctl status /config-service/acme/orders/db_url\n"
    "  configctl status --route orders --watch\n  configctl status -o json\n\n" + EPILOG
)
def status(
    parameter: Annotated[str | None, typer.Argument(help="Full parameter name (default: all).")] = None,
    route: Annotated[str | None, typer.Option("--route", help="Only rollouts of this ConfigRoute.")] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow progress until all are final.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many rollouts.")] = 20,
    timeout: TimeoutOpt = "10m",
    output_mode: OutputOpt = Mode.AUTO,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Show rollouts (ConfigRefreshes), newest first."""
    output = Output(output_mode)
    watch_seconds = parse_duration(timeout)

    def body() -> ExitCode:
        kube = Kube(KubeSettings(kubeconfig, context, namespace))
        rollouts = list_rollouts(kube, parameter=parameter, route=route, limit=limit)
        if watch and rollouts:
            deadline = time.monotonic() + watch_seconds
            with ProgressView(output) as view:
                while True:
                    view.update([row_for(r) for r in rollouts])
                    if all(r.final for r in rollouts):
                        break
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(1.0)
                    rollouts = list_rollouts(kube, parameter=parameter, route=route, limit=limit)
        if output.machine:
            output.document({"namespace": kube.namespace, "rollouts": [r.as_dict() for r in rollouts]})
        elif not rollouts:
            output.info(f"No rollouts in {kube.namespace}.")
        else:
            show_rollouts(output, rollouts)
        if watch and not all(r.final for r in rollouts):
            return ExitCode.WAIT_TIMEOUT
        return ExitCode.OK

    _run(output, body)


@app.command(
    epilog="\b\nExample:\n  configctl refresh /config-service/acme/orders/db_url --route orders --wait\n\n"
    + EPILOG
)
def refresh(
    parameter: Annotated[str, typer.Argument(help="Full parameter name.")],
    route: Annotated[
        str | None, typer.Option("--route", help="Only this ConfigRoute (default: all that claim it).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the rollout(s) are final.")] = False,
    timeout: TimeoutOpt = "2m",
    output_mode: OutputOpt = Mode.AUTO,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Push the current version of a parameter again (a manual ConfigRefresh), e.g. after a failed rollout."""
    output = Output(output_mode)
    wait_seconds = parse_duration(timeout)

    def body() -> ExitCode:
        aws = AwsSettings(region, endpoint_url, profile)
        session = session_for(aws)
        require_credentials(session)
        kube = Kube(KubeSettings(kubeconfig, context, namespace))
        created = [
            from_object(o)
            for o in create_refreshes(kube, ssm_client(session, aws), name=parameter, route=route)
        ]
        report: dict[str, Any] = {"created": [r.as_dict() for r in created]}
        for r in created:
            output.info(f"created {r.object_name} ({r.parameter} v{r.version}, route {r.route})")
        code = ExitCode.OK
        if wait:
            expected = [
                Expectation(Target(r.parameter, r.version or 0), r.route, r.object_name) for r in created
            ]
            code, report["wait"] = _wait(output, kube, [], timeout=wait_seconds, expected=expected)
        if output.machine:
            output.document(report)
        return code

    _run(output, body)


@app.command(
    epilog="\b\nExamples:\n  configctl verify --route orders\n  configctl verify --no-wait\n\n" + EPILOG
)
def verify(
    route: Annotated[
        list[str] | None, typer.Option("--route", help="This ConfigRoute (repeatable; default: all).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for the operator's answer in status.resync.")
    ] = True,
    timeout: TimeoutOpt = "2m",
    output_mode: OutputOpt = Mode.AUTO,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Run a route's resync now: recover missed changes and repair instances behind the newest version."""
    output = Output(output_mode)
    wait_seconds = parse_duration(timeout)

    def body() -> ExitCode:
        kube = Kube(KubeSettings(kubeconfig, context, namespace))
        tokens = request_verify(kube, route)
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

    _run(output, body)


@app.command(
    epilog="\b\nExample:\n  configctl rollback /config-service/acme/orders/db_url --wait\n\n" + EPILOG
)
def rollback(
    parameter: Annotated[str, typer.Argument(help="Full parameter name.")],
    to_version: Annotated[
        int | None, typer.Option("--to-version", help="Version to restore (default: the one before current).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the rollout(s) are final.")] = False,
    timeout: TimeoutOpt = "2m",
    output_mode: OutputOpt = Mode.AUTO,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Write the previous version's value back to Parameter Store as a new version (then rolled out)."""
    output = Output(output_mode)
    wait_seconds = parse_duration(timeout)

    def body() -> ExitCode:
        aws = AwsSettings(region, endpoint_url, profile)
        session = session_for(aws)
        require_credentials(session)
        done = rollback_parameter(ssm_client(session, aws), parameter, to_version=to_version)
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
            kube = Kube(KubeSettings(kubeconfig, context, namespace))
            code, report["wait"] = _wait(
                output, kube, [Target(parameter, done.new_version)], timeout=wait_seconds
            )
        if output.machine:
            output.document(report)
        return code

    _run(output, body)


rollout_app = typer.Typer(
    help="Act on a progressive rollout that halted between waves (phase Halted).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(rollout_app, name="rollout")
RefreshNameArg = Annotated[str, typer.Argument(help="The ConfigRefresh name (kubectl get cfgr).")]


def _rollout_action(action: str, name: str, output: Output, settings: KubeSettings) -> ExitCode:
    kube = Kube(settings)
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


@rollout_app.command("resume")
def rollout_resume(
    name: RefreshNameArg,
    output_mode: OutputOpt = Mode.AUTO,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Start the next wave of a Halted rollout."""
    output = Output(output_mode)
    _run(
        output, lambda: _rollout_action("resume", name, output, KubeSettings(kubeconfig, context, namespace))
    )


@rollout_app.command("abort")
def rollout_abort(
    name: RefreshNameArg,
    output_mode: OutputOpt = Mode.AUTO,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Give up a Halted rollout (phase Failed, reason Aborted); instances keep what they hold."""
    output = Output(output_mode)
    _run(output, lambda: _rollout_action("abort", name, output, KubeSettings(kubeconfig, context, namespace)))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="configctl")


if __name__ == "__main__":
    main()
