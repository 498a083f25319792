"""Output for people and for machines, from one description of the result.

`table` uses rich (colour, tables) and is the default on a terminal; `plain` prints one fact per line
and is the default otherwise (CI logs); `json` and `yaml` print one document on stdout for scripts, with
messages on stderr. Values pass through `masking.shown_value`, so no mode prints a SecureString value.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from configctl.apply import ApplyResult
from configctl.masking import shown_value
from configctl.model import InputProblem
from configctl.plan import Action, Change, Plan


class Mode(enum.StrEnum):
    AUTO = "auto"
    TABLE = "table"
    PLAIN = "plain"
    JSON = "json"
    YAML = "yaml"


_SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.UNCHANGED: "=", Action.DELETE: "-"}
_STYLE = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.UNCHANGED: "dim", Action.DELETE: "red"}


class Output:
    """Where and how results are written."""

    def __init__(self, mode: Mode, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        out = stdout if stdout is not None else sys.stdout
        err = stderr if stderr is not None else sys.stderr
        if mode is Mode.AUTO:
            mode = Mode.TABLE if out.isatty() else Mode.PLAIN
        self.mode = mode
        self.stdout = out
        self.stderr = err
        self.console = Console(file=out, highlight=False, soft_wrap=True)
        self.err_console = Console(file=err, highlight=False, soft_wrap=True)

    @property
    def machine(self) -> bool:
        return self.mode in (Mode.JSON, Mode.YAML)

    @property
    def rich(self) -> bool:
        return self.mode is Mode.TABLE

    def document(self, data: Any) -> None:
        """Print one JSON or YAML document on stdout."""
        if self.mode is Mode.YAML:
            self.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
        else:
            self.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        self.stdout.flush()

    def info(self, text: str) -> None:
        """A message for people: stdout in table/plain mode, stderr in machine modes."""
        if self.machine:
            self.stderr.write(text + "\n")
            self.stderr.flush()
        elif self.rich:
            self.console.print(Text(text))
        else:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def error(self, text: str) -> None:
        if self.rich:
            self.err_console.print(Text(f"error: {text}", style="bold red"))
        else:
            self.stderr.write(f"error: {text}\n")
            self.stderr.flush()


# ---- plan ---------------------------------------------------------------------------------------------


def _type_of(change: Change) -> str:
    side = change.desired or change.current
    return side.type if side is not None else ""


def _old_new(change: Change) -> tuple[str | None, str | None]:
    secret = change.secret
    old = shown_value(change.current.value, secret=secret) if change.current is not None else None
    new = shown_value(change.desired.value, secret=secret) if change.desired is not None else None
    return old, new


def plan_data(plan: Plan) -> dict[str, Any]:
    changes = []
    for change in plan.changes:
        old, new = _old_new(change)
        changes.append(
            {
                "action": change.action.value,
                "name": change.name,
                "type": _type_of(change),
                "currentVersion": change.current.version if change.current is not None else None,
                "fields": list(change.fields),
                "old": old,
                "new": new,
                "secret": change.secret,
            }
        )
    return {
        "scope": plan.scope,
        "summary": plan.counts(),
        "changes": changes,
        "unmanaged": list(plan.unmanaged),
    }


def _quote(text: str | None, *, secret: bool) -> str:
    if text is None:
        return ""
    return text if secret else json.dumps(text, ensure_ascii=False)


def diff_lines(plan: Plan, *, show_unchanged: bool = False) -> list[tuple[str, str]]:
    """The plan as (style, line) pairs: a readable diff; secret values masked."""
    lines: list[tuple[str, str]] = []
    for change in plan.changes:
        if change.action is Action.UNCHANGED and not show_unchanged:
            continue
        old, new = _old_new(change)
        secret = change.secret
        version = f" v{change.current.version}" if change.current is not None else ""
        head = f"{_SYMBOL[change.action]} {change.name} ({_type_of(change)}{version})"
        if change.action is Action.CREATE:
            body = f" = {_quote(new, secret=secret)}"
        elif change.action is Action.UPDATE:
            parts = []
            if "value" in change.fields or "type" in change.fields:
                parts.append(f"{_quote(old, secret=secret)} -> {_quote(new, secret=secret)}")
            other = [f for f in change.fields if f != "value"]
            if other:
                parts.append(f"[{', '.join(other)} changed]")
            body = ": " + " ".join(parts)
        elif change.action is Action.DELETE:
            body = f" (was {_quote(old, secret=secret)})"
        else:
            body = ""
        lines.append((_STYLE[change.action], head + body))
    counts = plan.counts()
    summary = ", ".join(
        f"{counts[a.value]} to {a.value}" for a in (Action.CREATE, Action.UPDATE, Action.DELETE)
    )
    lines.append(("bold", f"Plan for {plan.scope}: {summary}, {counts['unchanged']} unchanged."))
    if plan.unmanaged:
        lines.append(
            (
                "dim",
                f"{len(plan.unmanaged)} parameter(s) under {plan.scope} are not in the tree "
                "(--prune deletes them).",
            )
        )
    return lines


def show_plan(output: Output, plan: Plan) -> None:
    if output.machine:
        output.document({"plan": plan_data(plan)})
        return
    for style, line in diff_lines(plan):
        if output.rich:
            output.console.print(Text(line, style=style))
        else:
            output.stdout.write(line + "\n")
    output.stdout.flush()


# ---- apply --------------------------------------------------------------------------------------------


def apply_data(result: ApplyResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "written": [{"name": w.name, "action": w.action.value, "version": w.version} for w in result.written],
        "failed": (
            None
            if result.failed is None
            else {
                "name": result.failed.name,
                "action": result.failed.action.value,
                "error": result.failed.error,
            }
        ),
        "notWritten": [{"name": c.name, "action": c.action.value} for c in result.not_written],
    }


def show_apply(
    output: Output, plan: Plan, result: ApplyResult, *, extra: dict[str, Any] | None = None
) -> None:
    if output.machine:
        output.document({"plan": plan_data(plan), "apply": apply_data(result), **(extra or {})})
        return
    if output.rich and result.written:
        table = Table(title="Written", title_justify="left")
        for column in ("Action", "Parameter", "Version"):
            table.add_column(column)
        for w in result.written:
            table.add_row(w.action.value, Text(w.name), "" if w.version is None else str(w.version))
        output.console.print(table)
    elif result.written:
        for w in result.written:
            version = "" if w.version is None else f" version {w.version}"
            output.stdout.write(f"written: {w.action.value} {w.name}{version}\n")
    if result.failed is not None:
        output.error(f"failed: {result.failed.action.value} {result.failed.name}: {result.failed.error}")
        for change in result.not_written:
            output.error(f"not written: {change.action.value} {change.name}")
        output.error(
            f"apply stopped: {len(result.written)} written, 1 failed, {len(result.not_written)} not written"
        )
    else:
        output.info(f"Applied: {len(result.written)} change(s).")
    output.stdout.flush()


def show_problems(output: Output, problems: Sequence[InputProblem], *, scope: str) -> None:
    if output.machine:
        output.document(
            {
                "ok": False,
                "scope": scope,
                "problems": [{"source": p.source, "message": p.message} for p in problems],
            }
        )
    for problem in problems:
        output.error(str(problem))
    output.error(f"{len(problems)} problem(s) in the config tree; nothing was written.")
