"""Rollouts on screen: tables, live progress bars on a terminal, one line per change in CI logs.

`ProgressView` is fed snapshots (from `wait` or `status --watch`) and decides how to show them: rich
progress bars when the output is a terminal, a plain line whenever a rollout's phase or count changes
otherwise, and nothing on stdout in JSON/YAML mode (the final document is the output there).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from types import TracebackType

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from configctl.output import Output
from configctl.rollouts import Rollout

_PHASE_STYLE = {
    "Succeeded": "green",
    "PartiallyFailed": "yellow",
    "Failed": "red",
    "Superseded": "dim",
    "InProgress": "cyan",
    "Pending": "white",
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of progress: a rollout, or a rollout that does not exist yet."""

    key: str
    label: str
    phase: str
    done: int
    total: int


def age(created: str, *, now: datetime.datetime | None = None) -> str:
    try:
        then = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def row_for(rollout: Rollout) -> Row:
    version = "" if rollout.version is None else f" v{rollout.version}"
    return Row(
        key=rollout.object_name,
        label=f"{rollout.parameter}{version} [{rollout.route}]",
        phase=rollout.phase,
        done=rollout.done_count,
        total=rollout.targets,
    )


class ProgressView:
    """Live progress: rich bars on a terminal, change lines otherwise, silence for machines."""

    def __init__(self, output: Output) -> None:
        self._output = output
        self._last: dict[str, tuple[str, int, int]] = {}
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressView:
        if self._output.rich:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[phase]}"),
                console=self._output.console,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, rows: Sequence[Row]) -> None:
        for row in rows:
            state = (row.phase, row.done, row.total)
            if self._last.get(row.key) == state:
                continue
            self._last[row.key] = state
            if self._progress is not None:
                style = _PHASE_STYLE.get(row.phase, "white")
                phase = f"[{style}]{row.phase}[/{style}]"
                if row.key not in self._tasks:
                    self._tasks[row.key] = self._progress.add_task(
                        escape(row.label), total=max(row.total, 1), completed=row.done, phase=phase
                    )
                else:
                    self._progress.update(
                        self._tasks[row.key], total=max(row.total, 1), completed=row.done, phase=phase
                    )
            elif not self._output.machine:
                self._output.info(f"{row.label}: {row.phase} {row.done}/{row.total}")


def rollouts_table(rollouts: Sequence[Rollout], *, title: str | None = None) -> Table:
    table = Table(title=None if title is None else Text(title), title_justify="left")
    for column in (
        "Parameter",
        "Version",
        "Route",
        "Phase",
        "Refreshed",
        "Failed",
        "Latency",
        "Trigger",
        "Age",
    ):
        table.add_column(column)
    for r in rollouts:
        table.add_row(
            Text(r.parameter),
            "" if r.version is None else str(r.version),
            Text(r.route),
            Text(r.phase, style=_PHASE_STYLE.get(r.phase, "white")),
            f"{r.refreshed}/{r.remaining}",
            str(r.failed),
            "" if r.latency_ms is None else f"{r.latency_ms}ms",
            r.trigger,
            age(r.created),
        )
    return table


def rollout_line(r: Rollout) -> str:
    version = "" if r.version is None else f" v{r.version}"
    latency = "" if r.latency_ms is None else f" latency={r.latency_ms}ms"
    gone = f" gone={r.gone}" if r.gone else ""
    return (
        f"{r.parameter}{version} route={r.route} phase={r.phase} refreshed={r.refreshed}/{r.remaining} "
        f"stale={r.stale} failed={r.failed}{gone}{latency} trigger={r.trigger} age={age(r.created)} "
        f"object={r.object_name}"
    )


def show_rollouts(output: Output, rollouts: Sequence[Rollout], *, title: str | None = None) -> None:
    if output.rich:
        output.console.print(rollouts_table(rollouts, title=title))
    else:
        if title:
            output.info(title)
        for r in rollouts:
            output.info(rollout_line(r))


def show_failed_instances(output: Output, rollouts: Sequence[Rollout]) -> None:
    """The instances that did not apply, per failed rollout (table on a terminal, lines on stderr else)."""
    for r in rollouts:
        failed = r.failed_instances()
        heading = (
            f"{r.parameter} v{r.version} [{r.route}]: {r.phase}, {r.failed} of {r.targets} instance(s) failed"
        )
        if r.instances_truncated:
            heading += " (instance list truncated)"
        if output.rich:
            table = Table(title=Text(heading), title_justify="left")
            for column in ("Instance", "Address", "Result", "Version", "Attempts", "Error"):
                table.add_column(column)
            for i in failed:
                table.add_row(
                    i.id,
                    i.address,
                    i.result,
                    "" if i.version is None else str(i.version),
                    str(i.attempts),
                    i.error,
                )
            output.err_console.print(table)
        else:
            output.error(heading)
            for i in failed:
                output.error(
                    f"  instance {i.id} address={i.address} result={i.result} "
                    f"attempts={i.attempts} error={i.error}"
                )
