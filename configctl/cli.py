"""`configctl`: apply a config tree to Parameter Store and wait until it is live on every instance.

This module is wiring only: it declares the commands and their flags, builds the one settings object
(`with_settings`: the AWS and Kubernetes flags, generated from `ConfigctlSettings`, over the environment),
calls the command's body in `commands` (or `waiting`), and maps every outcome to an exit code from
`exitcodes`.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from configctl import commands
from configctl.exitcodes import ConfigctlError, ExitCode, help_table
from configctl.kube import Kube
from configctl.output import Mode, Output
from configctl.settings import AWS, KUBE, ConfigctlSettings, load_settings, variable
from configctl.waiting import run_status

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
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait until the rollout(s) are final.")]
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
        if exc.message:  # empty: the problems are already shown
            output.error(exc.message)
        code = exc.exit_code
    except KeyboardInterrupt:
        output.error("interrupted")
        code = ExitCode.ERROR
    raise typer.Exit(int(code))


def with_settings(*names: str) -> Callable[[Callable[..., ExitCode]], Callable[..., None]]:
    """Make a command body a command: give it `--output` and the flags of these settings (generated from
    `ConfigctlSettings`' fields, so each is declared once), call it with `output=` and `settings=` (the
    flags given over the environment), and exit with the code it returns or its error's code."""

    def decorate(command: Callable[..., ExitCode]) -> Callable[..., None]:
        signature = inspect.signature(command)
        hints = typing.get_type_hints(command, include_extras=True)
        parameters = [
            p.replace(annotation=hints[p.name])
            for p in signature.parameters.values()
            if p.name not in ("settings", "output")
        ]
        kind = inspect.Parameter.KEYWORD_ONLY
        parameters.append(inspect.Parameter("output_mode", kind, default=Mode.AUTO, annotation=OutputOpt))
        for name in names:
            field = ConfigctlSettings.model_fields[name]
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            flags = [f"--{name.replace('_', '-')}", *([str(extra["short"])] if "short" in extra else [])]
            option = typer.Option(*flags, help=f"{field.description} [env {variable(name)}]")
            parameters.append(
                inspect.Parameter(name, kind, default=None, annotation=Annotated[str | None, option])
            )

        @functools.wraps(command)
        def run(**arguments: Any) -> None:
            output = Output(arguments.pop("output_mode"))
            given = {name: arguments.pop(name) for name in names}
            try:
                settings = load_settings(**given)
            except ConfigctlError as exc:
                typer.echo(exc.message, err=True)
                raise typer.Exit(int(exc.exit_code)) from None
            _run(output, lambda: command(output=output, settings=settings, **arguments))

        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters, return_annotation=None
        )
        run.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
        return run

    return decorate


# ---- apply / diff -------------------------------------------------------------------------------------


@app.command(
    epilog="\b\nExample:\n  configctl apply config/tenants --prefix /config-service/ --wait --timeout 2m\n\n"
    + EPILOG
)
@with_settings(*AWS, *KUBE)
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
    *,
    output: Output,
    settings: ConfigctlSettings,
) -> ExitCode:
    """Apply a config tree: validate, plan, write only what changed (and with --wait, wait until live)."""
    wait_seconds = parse_duration(timeout)
    return commands.run_apply(
        output,
        settings,
        path=path,
        prefix=prefix,
        prune=prune,
        dry_run=dry_run,
        wait=wait,
        wait_seconds=wait_seconds,
    )


@app.command(
    epilog="\b\nExample:\n  configctl diff config/tenants --prefix /config-service/ --prune\n\n" + EPILOG
)
@with_settings(*AWS)
def diff(
    path: PathArg,
    prefix: PrefixOpt,
    prune: PruneOpt = False,
    exit_code: Annotated[
        bool,
        typer.Option("--exit-code", help=f"Exit {int(ExitCode.CHANGES_PENDING)} when the plan has changes."),
    ] = False,
    *,
    output: Output,
    settings: ConfigctlSettings,
) -> ExitCode:
    """Show what apply would change, as a diff (secret values masked); writes nothing."""
    return commands.run_diff(
        output,
        settings,
        path=path,
        prefix=prefix,
        prune=prune,
        exit_code=exit_code,
    )


# ---- status / refresh / verify / rollback -------------------------------------------------------------


@app.command(
    epilog="\b\nExamples:\n  configctl status /config-service/acme/orders/db_url\n"
    "  configctl status --route orders --watch\n  configctl status -o json\n\n" + EPILOG
)
@with_settings(*KUBE)
def status(
    parameter: Annotated[str | None, typer.Argument(help="Full parameter name (default: all).")] = None,
    route: Annotated[str | None, typer.Option("--route", help="Only rollouts of this ConfigRoute.")] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow progress until all are final.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many rollouts.")] = 20,
    timeout: TimeoutOpt = "10m",
    *,
    output: Output,
    settings: ConfigctlSettings,
) -> ExitCode:
    """Show rollouts (ConfigRefreshes), newest first."""
    watch_seconds = parse_duration(timeout)
    return run_status(
        output,
        Kube(settings),
        parameter=parameter,
        route=route,
        limit=limit,
        watch=watch,
        watch_seconds=watch_seconds,
    )


@app.command(
    epilog="\b\nExample:\n  configctl refresh /config-service/acme/orders/db_url --route orders --wait\n\n"
    + EPILOG
)
@with_settings(*AWS, *KUBE)
def refresh(
    parameter: Annotated[str, typer.Argument(help="Full parameter name.")],
    route: Annotated[
        str | None, typer.Option("--route", help="Only this ConfigRoute (default: all that claim it).")
    ] = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = "2m",
    *,
    output: Output,
    settings: ConfigctlSettings,
) -> ExitCode:
    """Push the current version of a parameter again (a manual ConfigRefresh), e.g. after a failed rollout."""
    wait_seconds = parse_duration(timeout)
    return commands.run_refresh(
        output,
        settings,
        parameter=parameter,
        route=route,
        wait=wait,
        wait_seconds=wait_seconds,
    )


@app.command(
    epilog="\b\nExamples:\n  configctl verify --route orders\n  configctl verify --no-wait\n\n" + EPILOG
)
@with_settings(*KUBE)
def verify(
    route: Annotated[
        list[str] | None, typer.Option("--route", help="This ConfigRoute (repeatable; default: all).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for the operator's answer in status.resync.")
    ] = True,
    timeout: TimeoutOpt = "2m",
    *,
    output: Output,
    settings: ConfigctlSettings,
) -> ExitCode:
    """Run a route's resync now: recover missed changes and repair instances behind the newest version."""
    wait_seconds = parse_duration(timeout)
    return commands.run_verify(
        output,
        Kube(settings),
        routes=route,
        wait=wait,
        timeout=timeout,
        wait_seconds=wait_seconds,
    )


@app.command(
    epilog="\b\nExample:\n  configctl rollback /config-service/acme/orders/db_url --wait\n\n" + EPILOG
)
@with_settings(*AWS, *KUBE)
def rollback(
    parameter: Annotated[str, typer.Argument(help="Full parameter name.")],
    wait: WaitOpt = False,
    timeout: TimeoutOpt = "2m",
    to_version: Annotated[
        int | None, typer.Option("--to-version", help="Version to restore (default: the one before current).")
    ] = None,
    *,
    output: Output,
    settings: ConfigctlSettings,
) -> ExitCode:
    """Write the previous version's value back to Parameter Store as a new version (then rolled out)."""
    wait_seconds = parse_duration(timeout)
    return commands.run_rollback(
        output,
        settings,
        parameter=parameter,
        to_version=to_version,
        wait=wait,
        wait_seconds=wait_seconds,
    )


# ---- rollout resume / abort ---------------------------------------------------------------------------

rollout_app = typer.Typer(
    help="Act on a progressive rollout that halted between waves (phase Halted).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(rollout_app, name="rollout")
RefreshNameArg = Annotated[str, typer.Argument(help="The ConfigRefresh name (kubectl get cfgr).")]


@rollout_app.command("resume")
@with_settings(*KUBE)
def rollout_resume(
    name: RefreshNameArg,
    *,
    output: Output,
    settings: ConfigctlSettings,
) -> ExitCode:
    """Start the next wave of a Halted rollout."""
    return commands.run_rollout_action(output, Kube(settings), action="resume", name=name)


@rollout_app.command("abort")
@with_settings(*KUBE)
def rollout_abort(
    name: RefreshNameArg,
    *,
    output: Output,
    settings: ConfigctlSettings,
) -> ExitCode:
    """Give up a Halted rollout (phase Failed, reason Aborted); instances keep what they hold."""
    return commands.run_rollout_action(output, Kube(settings), action="abort", name=name)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="configctl")


if __name__ == "__main__":
    main()
